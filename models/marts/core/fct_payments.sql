{{
    config(
        materialized='incremental',
        unique_key='payment_id',
        partition_by=date_partition('payment_date')
    )
}}

-- One row per payment, latest status, amount in USD. Incremental on the load timestamp.
with

payments as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount,
        currency_code,
        amount_usd,
        created_at,
        payment_date,
        _loaded_at
    from {{ ref('int_payments_converted') }}
    {% if is_incremental() %}
        where _loaded_at > {{ loaded_at_watermark() }}
    {% endif %}

),

final as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount,
        currency_code,
        amount_usd,
        created_at,
        payment_date,
        _loaded_at
    from payments

)

select
    payment_id,
    order_id,
    payment_method,
    payment_status,
    amount,
    currency_code,
    amount_usd,
    created_at,
    payment_date,
    _loaded_at
from {{ changed_rows('final', 'payment_id') }}
{{ load_ordered() }}
