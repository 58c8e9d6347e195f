{#-
    Registers every table of the `landing` source as a view over its Parquet folder, at the
    start of every dbt invocation. The entity list comes from _landing__sources.yml, so a new
    source needs no change here. Views re-list the folder at query time: new load partitions
    appear without re-registering, and `load_date` (the hive partition) prunes files.
-#}
{% macro register_landing_sources() %}
    {%- if execute -%}
        {{ return(adapter.dispatch('register_landing_sources', 'commerce')()) }}
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
    {#- Quotes are doubled so a path can never end the SQL string it is embedded in. -#}
    {{ return((var('landing_root') ~ '/' ~ entity) | replace("'", "''")) }}
{% endmacro %}

{% macro duckdb__register_landing_sources() %}
    create schema if not exists landing;
    {% for entity in landing_entities() %}
        create or replace view landing.{{ entity }} as
        select * from read_parquet(
            '{{ landing_path(entity) }}/*/*.parquet',
            hive_partitioning = true,
            hive_types = {'load_date': date},
            union_by_name = true
        );
    {% endfor %}
{% endmacro %}
