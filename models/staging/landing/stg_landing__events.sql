{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='event_id',
        on_schema_change='append_new_columns'
    )
}}

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
        where load_date >= {{ load_date_floor() }}
    {% endif %}

),

renamed as (

    select
        trim(event_id) as event_id,
        trim(session_id) as session_id,
        cast(customer_id as bigint) as customer_id,
        lower(trim(event_type)) as event_type,
        cast(event_at as timestamp) as event_at,
        page,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

ranked as (

    select
        event_id,
        session_id,
        customer_id,
        event_type,
        event_at,
        page,
        _loaded_at,
        _load_date,
        row_number() over (
            partition by event_id
            order by _loaded_at desc
        ) as version_rank
    from renamed

),

final as (

    select
        event_id,
        session_id,
        customer_id,
        event_type,
        event_at,
        cast(event_at as date) as event_date,
        page,
        _loaded_at,
        _load_date
    from ranked
    where version_rank = 1

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
