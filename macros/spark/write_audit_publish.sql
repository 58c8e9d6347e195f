{#-
    Write-audit-publish on Spark + Iceberg (docs/design.md, "Publishing on Spark").

    `pipeline run` sets the session conf `spark.wap.branch` to the run's branch (the Iceberg
    publisher, python/pipeline/iceberg.py); every Iceberg table carries `write.wap.enabled`, so
    INSERT, MERGE, DELETE and INSERT OVERWRITE go to that branch and `main`, what consumers
    read, moves only when the run is published.

    Two statements cannot be isolated that way and are replaced here while a branch is set:
    `create or replace table` (a table model, a full refresh) replaces the table's metadata and
    leaves `main` empty for every reader, and `drop table` (seeds, a full refresh of an
    incremental model) removes the table for everyone. An existing table is overwritten on the
    branch instead. A table that does not exist yet is created as usual: its data goes to the
    branch and `main` appears at publish (nothing was ever published there). Without a branch
    (a person's `dbt build`) dbt-spark's own statements run unchanged.
-#}

{#- The run's WAP branch, or none when the session writes `main` directly. -#}
{% macro wap_branch() %}
    {%- if not execute or target.type != 'spark' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows = run_query('set spark.wap.branch').rows -%}
    {%- set value = rows[0][1] if rows | length > 0 else none -%}
    {{ return(none if value in (none, '', '<undefined>') else value) }}
{% endmacro %}

{#- Whether a table exists, asked of the catalog (dbt's cache forgets what drop_relation saw). -#}
{#- Temporary views (no schema, or listed as temporary) are never WAP tables. -#}
{% macro wap_table_exists(relation) %}
    {%- if not relation.schema -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set listed = run_query(
        "show tables in " ~ relation.schema ~ " like '" ~ relation.identifier ~ "'"
    ) -%}
    {%- for row in listed.rows if row[1] | lower == relation.identifier | lower and not row[2] -%}
        {{ return(true) }}
    {%- endfor -%}
    {{ return(false) }}
{% endmacro %}

{#-
    dbt-spark's create_table_as, except that with a WAP branch set an existing table is
    overwritten on the branch (by column name, so a changed column order cannot shift values;
    a changed set of columns fails the statement: the run publishes nothing).
-#}
{%- macro spark__create_table_as(temporary, relation, compiled_code, language='sql') -%}
  {%- if not temporary and language == 'sql' and wap_branch() and wap_table_exists(relation) -%}
    {%- set contract_config = config.get('contract') -%}
    {%- if contract_config.enforced -%}
      {{ get_assert_columns_equivalent(compiled_code) }}
      {%- set compiled_code = get_select_subquery(compiled_code) %}
    {%- endif -%}
    {#- Static: the whole table is replaced, whatever an earlier model left in the session. -#}
    {%- do run_query('set spark.sql.sources.partitionOverwriteMode = STATIC') -%}
    insert overwrite table {{ relation }} by name
    {{ compiled_code }}
  {%- else -%}
    {{ dbt_spark_create_table_as(temporary, relation, compiled_code, language) }}
  {%- endif -%}
{%- endmacro -%}

{#- dbt-spark 1.11's spark__create_table_as, unchanged. -#}
{%- macro dbt_spark_create_table_as(temporary, relation, compiled_code, language='sql') -%}
  {%- if language == 'sql' -%}
    {%- if temporary -%}
      {{ create_temporary_view(relation, compiled_code) }}
    {%- else -%}
      {% if config.get('file_format', validator=validation.any[basestring]) in ['delta', 'iceberg'] %}
        create or replace table {{ relation }}
      {% else %}
        create table {{ relation }}
      {% endif %}
      {%- set contract_config = config.get('contract') -%}
      {%- if contract_config.enforced -%}
        {{ get_assert_columns_equivalent(compiled_code) }}
        {%- set compiled_code = get_select_subquery(compiled_code) %}
      {% endif %}
      {{ file_format_clause() }}
      {{ options_clause() }}
      {{ tblproperties_clause() }}
      {{ partition_cols(label="partitioned by") }}
      {{ clustered_cols(label="clustered by") }}
      {{ location_clause() }}
      {{ comment_clause() }}

      as
      {{ compiled_code }}
    {%- endif -%}
  {%- elif language == 'python' -%}
    {{ py_write_table(compiled_code=compiled_code, target_relation=relation) }}
  {%- endif -%}
{%- endmacro -%}

{#-
    With a WAP branch set, dropping a table would remove it for every reader: it is emptied on
    the branch instead, and the statement that follows (create_table_as above) fills it.
-#}
{% macro spark__drop_relation(relation) -%}
  {% if relation.type == 'table' and wap_branch() and wap_table_exists(relation) %}
    {% call statement('drop_relation', auto_begin=False) -%}
      delete from {{ relation }}
    {%- endcall %}
  {% else %}
    {% call statement('drop_relation', auto_begin=False) -%}
      drop {{ relation.type }} if exists {{ relation }}
    {%- endcall %}
  {% endif %}
{%- endmacro %}

{#- A seed that exists is emptied and reloaded on the branch rather than dropped. -#}
{% macro spark__reset_csv_table(model, full_refresh, old_relation, agate_table) %}
    {% if old_relation and wap_branch() %}
        {% set sql %}delete from {{ old_relation }}{% endset %}
        {% call statement('_') -%}{{ sql }}{%- endcall %}
        {{ return(sql) }}
    {% endif %}
    {% if old_relation %}
        {{ adapter.drop_relation(old_relation) }}
    {% endif %}
    {% set sql = create_csv_table(model, agate_table) %}
    {{ return(sql) }}
{% endmacro %}
