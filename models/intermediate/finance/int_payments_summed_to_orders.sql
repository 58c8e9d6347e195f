{{ config(materialized='incremental', unique_key='order_id') }}

-- Payment totals per order. Incremental: only orders with a payment loaded since the
-- high-water mark (minus the lookback) are re-summed, from all of their payments.
with

payments as (

    select
        order_id,
        payment_status,
        amount_usd,
        _loaded_at
    from {{ ref('int_payments_converted') }}
    {% if is_incremental() %}
        where
            order_id >= {{ touched_key_floor(ref('int_payments_converted'), 'order_id') }}
            and order_id in (
                {{ keys_loaded_since_watermark(ref('int_payments_converted'), 'order_id') }}
            )
    {% endif %}

),

final as (

    select
        order_id,
        count(*) as payment_count,
        cast(
            coalesce(sum(case when payment_status = 'completed' then amount_usd end), 0)
            as decimal(18, 2)
        ) as paid_usd,
        cast(
            coalesce(sum(case when payment_status = 'refunded' then amount_usd end), 0)
            as decimal(18, 2)
        ) as refunded_usd,
        max(_loaded_at) as _loaded_at
    from payments
    group by order_id

)

select
    order_id,
    payment_count,
    paid_usd,
    refunded_usd,
    _loaded_at
from {{ changed_rows('final', 'order_id') }}
{{ load_ordered() }}
