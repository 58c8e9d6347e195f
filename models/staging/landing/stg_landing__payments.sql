{{ config(materialized='incremental', unique_key='payment_id') }}

-- Big entity, read incrementally by load partition. A refund arrives as a new copy of the
-- payment in a later load; the payment's lifecycle (seed payment_statuses) comes first, so an
-- older `completed` copy delivered again never undoes a refund; then the latest load wins.
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

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='payment_id',
        columns=[
            'payment_id', 'order_id', 'payment_method', 'payment_status', 'amount_cents',
            'currency_code', 'created_at', '_loaded_at', '_load_date',
        ],
        order_by=['_loaded_at desc'],
        lifecycle={'column': 'payment_status', 'ranks': ref('payment_statuses')},
    ) }}

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
{{ load_ordered() }}
