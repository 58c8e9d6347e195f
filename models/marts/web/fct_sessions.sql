{{
    config(
        materialized='incremental',
        unique_key='session_id',
        partition_by=date_partition('session_date')
    )
}}

-- One row per web session. Incremental: sessions recomputed by int_events_sessionized since
-- the high-water mark (minus the lookback) are merged in, late events included. The watermark
-- is a literal, so the read prunes on `_loaded_at`, and the comparison with stored rows reads
-- only from the earliest session date recomputed.
{%- set prune = none -%}
{% if is_incremental() %}
    {%- set watermark = loaded_at_watermark() -%}
    {%- set floor_sql -%}
        select min(session_date) from {{ ref('int_events_sessionized') }}
        where _loaded_at > {{ watermark }}
    {%- endset -%}
    {%- set floor = inline_scalar(floor_sql, 'date', "date '9999-12-31'") -%}
    {%- set prune = ('session_date', floor) -%}
{% endif %}
with

sessions as (

    select
        session_id,
        customer_id,
        session_date,
        session_started_at,
        session_ended_at,
        event_count,
        page_view_count,
        add_to_cart_count,
        has_purchase,
        _loaded_at
    from {{ ref('int_events_sessionized') }}
    {% if is_incremental() %}
        where _loaded_at > {{ watermark }}
    {% endif %}

),

final as (

    select
        session_id,
        customer_id,
        session_date,
        session_started_at,
        session_ended_at,
        cast(event_count as bigint) as event_count,
        cast(page_view_count as bigint) as page_view_count,
        cast(add_to_cart_count as bigint) as add_to_cart_count,
        has_purchase,
        _loaded_at
    from sessions

)

select
    session_id,
    customer_id,
    session_date,
    session_started_at,
    session_ended_at,
    event_count,
    page_view_count,
    add_to_cart_count,
    has_purchase,
    _loaded_at
from {{ changed_rows('final', 'session_id', prune=prune) }}
{{ load_ordered() }}
