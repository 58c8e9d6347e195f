{{
    config(
        materialized='incremental',
        unique_key='session_id',
        partition_by=date_partition('session_date')
    )
}}

-- One row per web session. Incremental: sessions recomputed by int_events_sessionized since
-- the high-water mark (minus the lookback) are merged in, late events included.
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
        where _loaded_at > {{ loaded_at_watermark() }}
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
from {{ changed_rows('final', 'session_id') }}
