{#-
    Fails where two validity ranges of the same key overlap or leave a gap, or where a key has
    more than one open range: what an SCD2 history must never contain. An open range has a
    null upper bound.
-#}
{% test mutually_exclusive_ranges(model, lower_bound_column, upper_bound_column, partition_by) %}

with

ranges as (

    select
        {{ partition_by }} as range_key,
        {{ lower_bound_column }} as lower_bound,
        {{ upper_bound_column }} as upper_bound,
        lead({{ lower_bound_column }}) over (
            partition by {{ partition_by }}
            order by {{ lower_bound_column }}
        ) as next_lower_bound
    from {{ model }}

),

violations as (

    select
        range_key,
        lower_bound,
        upper_bound,
        next_lower_bound,
        case
            when upper_bound is not null and upper_bound <= lower_bound
                then 'range ends before it starts'
            when next_lower_bound is not null and upper_bound is null
                then 'an open range is followed by another range'
            when next_lower_bound is not null and upper_bound != next_lower_bound
                then 'ranges overlap or leave a gap'
        end as violation
    from ranges

)

select
    range_key,
    lower_bound,
    upper_bound,
    next_lower_bound,
    violation
from violations
where violation is not null

{% endtest %}
