{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='payment_id',
        on_schema_change='append_new_columns'
    )
}}

-- Big entity, read incrementally by load partition. A refund arrives as a new copy of the
-- payment in a later load: the latest load wins.
with

source as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount_cents,
        currency,
        created_at,
        _loaded_at,
        load_date
    from {{ source('landing', 'payments') }}
    {% if is_incremental() %}
        where {{ load_date_filter() }}
    {% endif %}

),

renamed as (

    select
        cast(payment_id as bigint) as payment_id,
        cast(order_id as bigint) as order_id,
        lower(trim(payment_method)) as payment_method,
        lower(trim(payment_status)) as payment_status,
        cast(amount_cents as bigint) as amount_cents,
        upper(trim(currency)) as currency_code,
        cast(created_at as timestamp) as created_at,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

{% if is_incremental() %}
    -- A window can hold an older copy than the table (a backfill, a replayed load): the
    -- table's newer copy competes in the ranking, so a merge never regresses a key.
    current_versions as (

        select
            payment_id,
            order_id,
            payment_method,
            payment_status,
            amount_cents,
            currency_code,
            created_at,
            _loaded_at,
            _load_date
        from {{ this }}
        where payment_id in (select renamed.payment_id from renamed)

    ),
{% endif %}

candidates as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount_cents,
        currency_code,
        created_at,
        _loaded_at,
        _load_date,
        false as is_stored
    from renamed
    {% if is_incremental() %}
        union all
        select
            payment_id,
            order_id,
            payment_method,
            payment_status,
            amount_cents,
            currency_code,
            created_at,
            _loaded_at,
            _load_date,
            true as is_stored
        from current_versions
    {% endif %}

),

ranked as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount_cents,
        currency_code,
        created_at,
        _loaded_at,
        _load_date,
        is_stored,
        row_number() over (
            partition by payment_id
            order by _loaded_at desc, is_stored desc
        ) as version_rank
    from candidates

),

final as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount_cents,
        currency_code,
        created_at,
        _loaded_at,
        _load_date
    from ranked
    -- Only what is newer than the stored copy is merged: re-reading the lookback window
    -- costs a scan, not a rewrite of rows that did not change.
    where version_rank = 1 and not is_stored

)

select
    payment_id,
    order_id,
    payment_method,
    payment_status,
    amount_cents,
    currency_code,
    created_at,
    _loaded_at,
    _load_date
from final
