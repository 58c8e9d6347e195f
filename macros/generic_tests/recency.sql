{#-
    Fails when the newest `column_name` is older than `interval` `datepart`s before the newest
    value of `reference_column` in `reference_model` (default: now). Comparing with a
    reference keeps the test meaningful on replayed or backfilled data, where "now" is not.
-#}
{% test recency(model, column_name, datepart, interval, reference_model=none, reference_column=none) %}

with

newest as (

    select max({{ column_name }}) as newest_value
    from {{ model }}

),

reference as (

    {% if reference_model is not none -%}
        select max({{ reference_column }}) as reference_value
        from {{ reference_model }}
    {%- else -%}
        select {{ dbt.current_timestamp() }} as reference_value
    {%- endif %}

)

select
    newest.newest_value,
    reference.reference_value
from newest
cross join reference
where
    newest.newest_value is null
    or newest.newest_value
    < {{ dbt.dateadd(datepart, -1 * interval, 'reference.reference_value') }}

{% endtest %}
