{#-
    Views on Spark are dropped before they are created again.

    With Iceberg's SQL extensions loaded (the Thrift server needs them for write-audit-publish
    and maintenance, docs/design.md), a view in the Iceberg session catalog is an Iceberg view,
    and `create or replace view` over an existing one does nothing: the old definition stays,
    and so a changed model or a landing view with new columns would be served stale, with dbt
    reporting success. Seen on the test cluster (test_cluster.py). A drop, then a create, takes
    effect with and without the extensions. Readers querying the view in the milliseconds
    between the two find no view; the views here are read by the runner's own models only.
-#}

{#- The project persists no column docs on views, so only the comment and a contract remain. -#}
{% macro spark__create_view_as(relation, sql) -%}
    {%- do drop_view_first(relation) -%}
    create view {{ relation }}
    {{ comment_clause() }}
    {%- if config.get('contract').enforced %}
        {{ get_assert_columns_equivalent(sql) }}
    {%- endif %}
    as
    {{ sql }}
{%- endmacro %}

{#- A DDL statement, executed without fetching (a Thrift cursor has no result set after DDL). -#}
{% macro drop_view_first(relation) -%}
    {%- if execute -%}
        {%- do adapter.execute('drop view if exists ' ~ relation) -%}
    {%- endif -%}
{%- endmacro %}
