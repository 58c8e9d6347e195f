{#-
    Physical date partitioning for the large facts, where the engine has it. On Spark with
    Iceberg the facts are partitioned by their date column (queries filter and incremental
    merges touch recent dates); DuckDB tables have no partitions, so there it is none.
-#}
{% macro date_partition(column) %}
    {{ return(adapter.dispatch('date_partition', 'commerce')(column)) }}
{% endmacro %}

{% macro default__date_partition(column) %}
    {{ return(none) }}
{% endmacro %}

{% macro spark__date_partition(column) %}
    {{ return([column]) }}
{% endmacro %}
