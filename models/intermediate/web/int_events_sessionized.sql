{{ config(materialized='incremental', unique_key='session_id') }}

-- Events rolled up to their web session. Incremental: a session with any event loaded since
-- the high-water mark (minus the lookback) is recomputed from all of its events, so a late
-- event updates the session it belongs to instead of starting a new one. Only the days those
-- sessions can span are read: from the earliest of their new events' dates and their stored
-- start dates (macro session_dates_floor), so the scan follows the day, not the history.
{%- set prune = none -%}
{% if is_incremental() %}
    {%- set watermark = loaded_at_watermark() -%}
    {%- set floor = session_dates_floor(ref('stg_landing__events'), watermark) -%}
    {%- set prune = ('session_date', floor) -%}
{% endif %}
with

{% if is_incremental() %}
    touched_sessions as (

        select distinct touched.session_id
        from {{ ref('stg_landing__events') }} as touched
        where touched._loaded_at > {{ watermark }}

    ),
{% endif %}

events as (

    select
        session_id,
        customer_id,
        event_type,
        event_at,
        _loaded_at
    from {{ ref('stg_landing__events') }}
    {% if is_incremental() %}
        where
            event_date >= {{ floor }}
            and session_id in (select touched_sessions.session_id from touched_sessions)
    {% endif %}

),

final as (

    select
        session_id,
        max(customer_id) as customer_id,
        min(event_at) as session_started_at,
        max(event_at) as session_ended_at,
        cast(min(event_at) as date) as session_date,
        count(*) as event_count,
        sum(case when event_type = 'page_view' then 1 else 0 end) as page_view_count,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as add_to_cart_count,
        max(case when event_type = 'purchase' then 1 else 0 end) = 1 as has_purchase,
        max(_loaded_at) as _loaded_at
    from events
    group by session_id

)

select
    session_id,
    customer_id,
    session_started_at,
    session_ended_at,
    session_date,
    event_count,
    page_view_count,
    add_to_cart_count,
    has_purchase,
    _loaded_at
from {{ changed_rows('final', 'session_id', prune=prune) }}
{{ load_ordered() }}
