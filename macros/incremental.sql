{#-
    Helpers for incremental models. Every incremental model reads only what is newer than its
    own high-water mark minus `lookback_days`, so late rows and late partitions still land and
    the cost of a run follows the new data, not the history.

    Backfill: with vars `backfill_start` and `backfill_end` (ISO dates, validated by
    `pipeline run --start-date/--end-date`), staging re-reads exactly those load partitions
    and downstream models recompute every key loaded since `backfill_start`. Merges make a
    repeated backfill a no-op.
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

{% macro backfill_window() %}
    {%- set start = var('backfill_start', none) -%}
    {%- set end = var('backfill_end', none) -%}
    {%- if (start is none) != (end is none) -%}
        {{ exceptions.raise_compiler_error("backfill needs both backfill_start and backfill_end, got " ~ start ~ " and " ~ end) }}
    {%- endif -%}
    {{ return(none if start is none else [modules.datetime.date.fromisoformat(start | string), modules.datetime.date.fromisoformat(end | string)]) }}
{% endmacro %}

{#-
    The run's clock as a SQL literal. A watermark never moves past it: a stored value from the
    future (the contract gate rejects new ones) cannot freeze what the next runs read.
-#}
{% macro run_clock(kind='timestamp') -%}
    {%- if kind == 'date' -%}
        date '{{ run_started_at.strftime("%Y-%m-%d") }}'
    {%- else -%}
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as timestamp)
    {%- endif -%}
{%- endmacro %}

{#-
    A scalar the model needs, read once when the model is compiled for execution and inlined as
    a literal: engines prune files, partitions and row groups on a constant, never on a
    subquery (DuckDB reads every landing file and every row group for `col >= (select ...)`).
    `sql` returns one row and one column; `kind` is `date`, `timestamp` or `number`. A null (an
    empty table) yields `fallback`. At parse time and in unit tests the subquery itself is
    returned.
-#}
{% macro inline_scalar(sql, kind, fallback) -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
        {#- A unit test's `this` and inputs are CTEs of its own query: nothing to run yet. -#}
        {{- return('(' ~ sql ~ ')') -}}
    {%- endif -%}
    {%- set value = run_query(sql).columns[0].values()[0] -%}
    {%- if value is string and kind != 'number' -%}
        {#- A Thrift server's driver (PyHive) returns dates and timestamps as ISO text. -#}
        {%- set value = modules.datetime.datetime.fromisoformat(value) -%}
    {%- endif -%}
    {%- if value is none -%}
        {{- return(fallback) -}}
    {%- elif kind == 'number' -%}
        {#- Through int: a key is never rendered as text, so nothing can be injected. -#}
        {{- return(value | int | string) -}}
    {%- elif kind == 'date' -%}
        {{- return("date '" ~ value.strftime('%Y-%m-%d') ~ "'") -}}
    {%- else -%}
        {{- return("cast('" ~ value.strftime('%Y-%m-%d %H:%M:%S.%f') ~ "' as timestamp)") -}}
    {%- endif -%}
{%- endmacro %}

{#- Predicate on a landing partition column for an incremental staging read. -#}
{% macro load_date_filter(column='load_date', watermark_column='_load_date') -%}
    {%- set window = backfill_window() -%}
    {%- if window -%}
        {{ column }} between date '{{ window[0] }}' and date '{{ window[1] }}'
    {%- else -%}
        {%- set watermark -%}
            select {{ date_days_before(
                'least(max(' ~ watermark_column ~ '), ' ~ run_clock('date') ~ ')',
                var('lookback_days'),
            ) }}
            from {{ this }}
        {%- endset -%}
        {{ column }} >= {{ inline_scalar(watermark, 'date', "date '0001-01-01'") }}
    {%- endif -%}
{%- endmacro %}

{#- The `_loaded_at` above which a downstream incremental model recomputes its keys. -#}
{% macro loaded_at_watermark(column='_loaded_at') -%}
    {%- set window = backfill_window() -%}
    {%- if window -%}
        cast('{{ window[0] }} 00:00:00' as timestamp)
    {%- else -%}
        {%- set watermark -%}
            select least(max({{ column }}), {{ run_clock('timestamp') }})
                - interval {{ var('lookback_days') }} day
            from {{ this }}
        {%- endset -%}
        {{- inline_scalar(watermark, 'timestamp', "cast('0001-01-01 00:00:00' as timestamp)") -}}
    {%- endif -%}
{%- endmacro %}

{#-
    The keys of `relation` with a row loaded since the model's watermark, as a subquery for
    `key in (...)`: a downstream model recomputes exactly these keys from all of their rows.
-#}
{% macro keys_loaded_since_watermark(relation, key) -%}
    select touched.{{ key }}
    from {{ relation }} as touched
    where touched._loaded_at > {{ loaded_at_watermark() }}
{%- endmacro %}

{#-
    The least key in `keys_loaded_since_watermark(relation, key)`, as a literal, for a read
    that also filters `key >= ...`: DuckDB prunes row groups on a constant, and pushes it
    below the joins of a view, where the `in (...)` semi join is applied only after the view
    joined all of history. Exact for any key (every touched key is at least the least one);
    it prunes where keys grow with time, as order ids do. Nothing touched: no row passes.
-#}
{% macro touched_key_floor(relation, key) -%}
    {%- set floor -%}
        select min(touched.{{ key }})
        from {{ relation }} as touched
        where touched._loaded_at > {{ loaded_at_watermark() }}
    {%- endset -%}
    {{- return(inline_scalar(floor, 'number', 'null')) -}}
{%- endmacro %}

{#-
    The rows of `cte` that differ from what the table already stores, on incremental runs.
    Lookback windows make a model recompute keys whose result did not change; merging those
    would rewrite identical rows, which costs engines far more than comparing them.

    The rows keep every column the model declares in its yml (for the marts, the enforced
    contract); they are compared on the columns both the model and the stored table have.
    When the two differ (a column added to the model), every recomputed row is returned, so
    dbt's own on_schema_change decides: `fail` stops with dbt's message naming the columns,
    `append_new_columns` adds the column. Never a binder error from this macro.

    `prune` = (column, literal) reads only stored rows with `column >= literal`, so the
    comparison scans the days the run touched, not the whole table. It only decides which
    rows are compared: a stored row it leaves out makes its recomputed row count as changed
    and be merged again, never lost, so any literal is safe; a good one skips most rewrites.
-#}
{% macro changed_rows(cte, unique_key, prune=none) -%}
    {%- if is_incremental() -%}
        {%- set declared = model.columns.keys() | list -%}
        {%- if not declared -%}
            {{ exceptions.raise_compiler_error(
                "changed_rows in " ~ model.name ~ " needs the model's columns listed in its yml"
            ) }}
        {%- endif -%}
        {%- set stored = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- set common = declared | select('in', stored) | list -%}
        {%- if common | length == declared | length and declared | length == stored | length -%}
        (
            select {{ declared | join(', ') }} from {{ cte }}
            except
            select {{ declared | join(', ') }} from {{ this }}
            where {{ unique_key }} in (select {{ unique_key }} from {{ cte }})
            {%- if prune and prune[1] %}
                and {{ prune[0] }} >= {{ prune[1] }}
            {%- endif %}
        ) as {{ cte }}_changed
        {%- else -%}
        {{ cte }}
        {%- endif -%}
    {%- else -%}
        {{ cte }}
    {%- endif -%}
{%- endmacro %}

{#-
    The earliest event date of any session an incremental run recomputes, as a date literal:
    the sessions with an event loaded after `watermark` start no earlier than their new
    events, or their stored start (`session_date` of this model's stored row) when they
    already existed. Every event of those sessions is on or after it, so a read pruned on
    `event_date` still sees all of them, a late event's old session included.
-#}
{% macro session_dates_floor(events, watermark) -%}
    {%- set floor -%}
        with touched as (
            select session_id, min(event_date) as first_new_date
            from {{ events }}
            where _loaded_at > {{ watermark }}
            group by session_id
        )
        select least(min(touched.first_new_date), min(stored.session_date))
        from touched
        left join {{ this }} as stored
            on touched.session_id = stored.session_id
    {%- endset -%}
    {{- return(inline_scalar(floor, 'date', "date '9999-12-31'")) -}}
{%- endmacro %}
