{#-
    Helpers for incremental models. Every incremental model reads only what is newer than its
    own high-water mark minus `lookback_days`, so late rows and late partitions still land and
    the cost of a run follows the new data, not the history.
-#}

{#- A date `days` before a date expression, as a date (engines disagree on date arithmetic). -#}
{% macro date_days_before(date_expr, days) %}
    {{ return(adapter.dispatch('date_days_before', 'commerce')(date_expr, days)) }}
{% endmacro %}

{% macro default__date_days_before(date_expr, days) -%}
    date_sub({{ date_expr }}, {{ days }})
{%- endmacro %}

{% macro duckdb__date_days_before(date_expr, days) -%}
    cast(({{ date_expr }}) - interval ({{ days }}) day as date)
{%- endmacro %}

{#- The oldest landing partition an incremental staging model re-reads. -#}
{% macro load_date_floor(column='_load_date') -%}
    (select {{ date_days_before('max(' ~ column ~ ')', var('lookback_days')) }} from {{ this }})
{%- endmacro %}

{#- The `_loaded_at` above which a downstream incremental model recomputes its keys. -#}
{% macro loaded_at_watermark(column='_loaded_at') -%}
    (select max({{ column }}) - interval {{ var('lookback_days') }} day from {{ this }})
{%- endmacro %}
