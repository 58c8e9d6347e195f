{#-
    Layers live in schemas named after them (staging, intermediate, marts, ...), not dbt's
    default `<target schema>_<layer>`: other teams query `marts.fct_orders` on every engine.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
