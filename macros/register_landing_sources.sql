{#-
    Registers every table of the `landing` source as a view over its Parquet folder, at the
    start of every dbt invocation. The entity list comes from _landing__sources.yml, so a new
    source needs no change here. Views re-list the folder at query time: new load partitions
    appear without re-registering, and `load_date` (the hive partition) prunes files. The
    view is the raw landing data by definition, so it selects every column the files carry.
    The statements are DDL and return no rows: they are executed without fetching, since a
    Thrift server's cursor has no result set to fetch after DDL (run_query fails there).
    `pipeline run` registers them once per run (its freshness gate) and passes the var
    `landing_registered` to its later invocations: creating a view lists and reads the footer
    of every landing file, a cost that grows with the history.
-#}
{% macro register_landing_sources() %}
    {%- if execute and not var('landing_registered', false) -%}
        {%- do adapter.execute(adapter.dispatch('create_landing_schema', 'commerce')()) -%}
        {%- for entity in landing_entities() -%}
            {%- do adapter.dispatch('before_landing_view', 'commerce')(entity) -%}
            {%- do adapter.execute(adapter.dispatch('landing_view_sql', 'commerce')(entity)) -%}
        {%- endfor -%}
    {%- endif -%}
{% endmacro %}

{% macro landing_entities() %}
    {%- set entities = [] -%}
    {%- for source_node in graph.sources.values() if source_node.source_name == 'landing' -%}
        {%- do entities.append(source_node.identifier) -%}
    {%- endfor -%}
    {{ return(entities | sort) }}
{% endmacro %}

{% macro landing_path(entity) %}
    {#-
        A relative landing_root is relative to the project, not to the folder dbt runs in.
        Quotes are doubled so a path can never end the SQL string it is embedded in.
    -#}
    {%- set root = var('landing_root') | string -%}
    {%- if not (root.startswith('/') or '://' in root) -%}
        {%- set root = (invocation_args_dict.get('project_dir') or '.') ~ '/' ~ root -%}
    {%- endif -%}
    {{ return((root ~ '/' ~ entity) | replace("'", "''")) }}
{% endmacro %}

{% macro default__create_landing_schema() -%}
    create schema if not exists landing
{%- endmacro %}

{% macro spark__create_landing_schema() -%}
    create database if not exists landing
{%- endmacro %}

{% macro duckdb__landing_view_sql(entity) -%}
    create or replace view landing.{{ entity }} as
    select * from read_parquet(
        '{{ landing_path(entity) }}/*/*.parquet',
        hive_partitioning = true,
        hive_types = {'load_date': date},
        union_by_name = true
    )
{%- endmacro %}

{% macro default__before_landing_view(entity) -%}{%- endmacro %}

{#- Spark: `create or replace` keeps an existing Iceberg view (macros/spark/views.sql). -#}
{% macro spark__before_landing_view(entity) -%}
    {%- do drop_view_first('landing.' ~ entity) -%}
{%- endmacro %}

{#- Spark discovers load_date=... partitions itself and merges schemas across files. -#}
{% macro spark__landing_view_sql(entity) -%}
    create or replace view landing.{{ entity }} as
    select * from parquet.`{{ landing_path(entity) | replace('`', '') }}`
{%- endmacro %}
