{{ config(materialized='incremental', unique_key='event_id') }}

-- The biggest entity, read incrementally by load partition. Events are delivered at least
-- once: copies share event_id and the latest load's copy is kept. A late event (event_at
-- days before its load) is simply a row of an older session; fct_sessions picks it up.
-- A daily run looks up stored copies only from the earliest event date it read (an event's
-- date never changes between its copies), so the lookup follows the day, not the history.
{% if is_incremental() %}
    {%- set read_filter = load_date_filter() -%}
    {%- set stored_floor = none -%}
    {%- if not backfill_window() -%}
        {%- set floor_sql -%}
            select min(cast(cast(event_at as timestamp) as date))
            from {{ source('landing', 'events') }}
            where {{ read_filter }}
        {%- endset -%}
        {%- set stored_floor = inline_scalar(floor_sql, 'date', "date '9999-12-31'") -%}
    {%- endif -%}
{% endif %}
with

source as (

    select
        event_id,
        session_id,
        customer_id,
        event_type,
        event_at,
        page,
        _loaded_at,
        load_date
    from {{ source('landing', 'events') }}
    {% if is_incremental() %}
        where {{ read_filter }}
    {% endif %}

),

renamed as (

    select
        trim(event_id) as event_id,
        trim(session_id) as session_id,
        cast(customer_id as bigint) as customer_id,
        lower(trim(event_type)) as event_type,
        cast(event_at as timestamp) as event_at,
        cast(cast(event_at as timestamp) as date) as event_date,
        page,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='event_id',
        columns=[
            'event_id', 'session_id', 'customer_id', 'event_type', 'event_at', 'event_date',
            'page', '_loaded_at', '_load_date',
        ],
        order_by=['_loaded_at desc'],
        prune=('event_date', stored_floor if is_incremental() else none),
    ) }}

)

select
    event_id,
    session_id,
    customer_id,
    event_type,
    event_at,
    event_date,
    page,
    _loaded_at,
    _load_date
from final
{{ load_ordered() }}
