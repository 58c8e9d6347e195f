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

{#-
    An incremental model's full build, in load order where the engine keeps the order rows
    are written in. DuckDB stores rows in insertion order and skips row groups on their
    min/max: a full build otherwise lays a table out in the hash order of its dedupe or its
    group by, so `_loaded_at > watermark` and the date floors of the daily reads prune almost
    nothing in the history a full refresh wrote (165 of 176 row groups of the events read at
    70 days of scale 1). Daily runs append in load order on their own. On Spark the facts are
    partitioned by date (`date_partition`) and a global sort would cost a shuffle: nothing.
-#}
{% macro load_ordered(column='_loaded_at') %}
    {{ return(adapter.dispatch('load_ordered', 'commerce')(column)) }}
{% endmacro %}

{% macro default__load_ordered(column) %}
    {{ return('') }}
{% endmacro %}

{% macro duckdb__load_ordered(column) %}
    {{ return('' if is_incremental() else 'order by ' ~ column) }}
{% endmacro %}
