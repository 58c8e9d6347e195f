{#-
    Data tests that scale with the day (docs/design.md, "Tests scale with the day").

    Overrides dbt's own `get_where_subquery` (a test's `where` config is still applied).
    `pipeline run` passes the var `tests_since` (an ISO date) on a daily run: the earliest
    `_loaded_at` any row this run merges can carry. A generic test on an incremental model
    (or a view over them) that declares `_loaded_at` then reads only the rows loaded since,
    which include every row the run wrote; the merge keys, the database's constraints and
    earlier runs' tests keep the older rows true. Without the var (`pipeline run --deep`, a full refresh, a backfill, a
    person's `dbt build`) every test reads its whole table.

    Self-contained on purpose: dbt calls it from its own namespace, where this project's other
    macros are not always in scope (partial parsing).
-#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- set since = var('tests_since', none) -%}
    {%- set scope = [] -%}
    {%- if since is not none and execute and relation.identifier is defined -%}
        {%- for node in graph.nodes.values() -%}
            {%- if node.resource_type == 'model'
                and node.config.materialized in ('incremental', 'view')
                and (node.alias | lower) == (relation.identifier | lower)
                and (node.schema | lower) == (relation.schema | lower)
                and '_loaded_at' in node.columns -%}
                {%- do scope.append(
                    "_loaded_at >= cast('"
                    ~ modules.datetime.date.fromisoformat(since | string)
                    ~ " 00:00:00' as timestamp)"
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if where and scope -%}
        {%- set where = '(' ~ where ~ ') and ' ~ scope[0] -%}
    {%- elif scope -%}
        {%- set where = scope[0] -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#-
    The same scope for a singular test that reads incremental models: a predicate on the
    model's `_loaded_at` on a daily run (var `tests_since`), `true` otherwise. The test
    decides which keys the predicate selects; see tests/assert_*.sql.
-#}
{% macro loaded_in_test_scope(column='_loaded_at') -%}
    {%- set since = var('tests_since', none) -%}
    {%- if since is none -%}
        true
    {%- else -%}
        {{ column }} >= cast('{{ modules.datetime.date.fromisoformat(since | string) }} 00:00:00' as timestamp)
    {%- endif -%}
{%- endmacro %}
