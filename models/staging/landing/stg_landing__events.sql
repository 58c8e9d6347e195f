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
        page,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

{% if is_incremental() %}
    -- A window can hold an older copy than the table (a backfill, a replayed load): the
    -- table's newer copy competes in the ranking, so a merge never regresses a key.
    current_versions as (

        select
            event_id,
            session_id,
            customer_id,
            event_type,
            event_at,
            page,
            _loaded_at,
            _load_date
        from {{ this }}
        where event_id in (select renamed.event_id from renamed)

    ),
{% endif %}

candidates as (

    select
        event_id,
        session_id,
        customer_id,
        event_type,
        event_at,
        page,
        _loaded_at,
        _load_date,
        false as is_stored
    from renamed
    {% if is_incremental() %}
        union all
        select
            event_id,
            session_id,
            customer_id,
            event_type,
            event_at,
            page,
            _loaded_at,
            _load_date,
            true as is_stored
        from current_versions
    {% endif %}

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
        is_stored,
        row_number() over (
            partition by event_id
            order by _loaded_at desc, is_stored desc
        ) as version_rank
    from candidates

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
    -- Only what is newer than the stored copy is merged: re-reading the lookback window
    -- costs a scan, not a rewrite of rows that did not change.
    where version_rank = 1 and not is_stored

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
