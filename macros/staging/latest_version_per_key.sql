{#-
    The versioning block every staging model shares: one row per `unique_key`, the latest
    version by `order_by`, as a select statement over the CTE `relation`.

    On an incremental run the stored copy of each key read competes with the new copies: a
    window can hold an older version than the table (a backfill, a replayed load), and a
    replayed old version must never overwrite a newer one already merged. Only winners that
    are new copies are returned, so re-reading a window costs a scan, never a rewrite of rows
    that did not change.

    In the style of dbt-utils' `deduplicate`: a thin dispatch and a default that both engines
    run; an adapter overrides it only where its SQL must differ.

    Arguments:
      relation    name of the CTE (or relation) holding the new copies, renamed and cast
      unique_key  the column that identifies a row
      columns     every column to return, in order; the stored table has the same columns
      order_by    list of `column [asc|desc]` deciding which version is the latest
-#}
{% macro latest_version_per_key(relation, unique_key, columns, order_by) %}
    {{- return(adapter.dispatch('latest_version_per_key', 'commerce')(
        relation, unique_key, columns, order_by
    )) -}}
{% endmacro %}

{% macro default__latest_version_per_key(relation, unique_key, columns, order_by) -%}
    {%- set column_list = columns | join(',\n        ') -%}
    {%- if is_incremental() -%}
    select
        {{ column_list }}
    from (
        select
            {{ column_list }},
            is_stored,
            row_number() over (
                partition by {{ unique_key }}
                order by {{ order_by | join(', ') }}, is_stored desc
            ) as version_rank
        from (
            select
                {{ column_list }},
                false as is_stored
            from {{ relation }}
            union all
            select
                {{ column_list }},
                true as is_stored
            from {{ this }}
            where {{ unique_key }} in (select {{ unique_key }} from {{ relation }})
        ) as candidates
    ) as ranked
    where version_rank = 1 and not is_stored
    {%- else -%}
    select
        {{ column_list }}
    from (
        select
            {{ column_list }},
            row_number() over (
                partition by {{ unique_key }}
                order by {{ order_by | join(', ') }}
            ) as version_rank
        from {{ relation }}
    ) as ranked
    where version_rank = 1
    {%- endif -%}
{%- endmacro %}
