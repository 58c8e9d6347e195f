{#-
    Fails on every row where `expression` is not true (false or null both fail). On a column,
    the expression continues the column name, e.g. `expression: ">= 0"`.
-#}
{% test expression_is_true(model, expression, column_name=none, where_clause=none) %}

with

checked as (

    select
        case
            when ({{ column_name ~ ' ' if column_name else '' }}{{ expression }}) then 1
            else 0
        end as is_true
    from {{ model }}
    {% if where_clause %}where {{ where_clause }}{% endif %}

)

select is_true
from checked
where is_true = 0

{% endtest %}
