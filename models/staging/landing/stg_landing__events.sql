{{ config(materialized='incremental', unique_key='event_id') }}

-- The biggest entity, read incrementally by load partition. Events are delivered at least
-- once: copies share event_id and the latest load's copy is kept. A late event (event_at
-- days before its load) is simply a row of an older session; fct_sessions picks it up.
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
        where {{ load_date_filter() }}
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
