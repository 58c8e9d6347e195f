{#-
    Fails when the model's row count falls outside [min_rows, max_rows]: a floor against an
    empty or truncated build, a ceiling against a join that exploded.
-#}
{% test row_count_between(model, min_rows=none, max_rows=none) %}

with

counted as (

    select count(*) as row_count
    from {{ model }}

)

select row_count
from counted
where
    1 = 0
    {%- if min_rows is not none %} or row_count < {{ min_rows }}{% endif %}
    {%- if max_rows is not none %} or row_count > {{ max_rows }}{% endif %}

{% endtest %}
