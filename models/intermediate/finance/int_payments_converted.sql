-- Row-level conversion of payments to USD. A view: incremental consumers filter on
-- _loaded_at and the filter reaches the staging scan.
with

payments as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        amount_cents,
        currency_code,
        created_at,
        _loaded_at
    from {{ ref('stg_landing__payments') }}

),

currency_rates as (

    select
        currency,
        usd_rate
    from {{ ref('currency_rates') }}

),

converted as (

    select
        payments.payment_id,
        payments.order_id,
        payments.payment_method,
        payments.payment_status,
        -- Cents to units by multiplying: decimal division is inexact on some engines.
        cast(payments.amount_cents as decimal(18, 0)) * cast(0.01 as decimal(3, 2)) as amount,
        payments.currency_code,
        currency_rates.usd_rate,
        payments.created_at,
        payments._loaded_at
    from payments
    left join currency_rates
        on payments.currency_code = currency_rates.currency

),

final as (

    select
        payment_id,
        order_id,
        payment_method,
        payment_status,
        cast(amount as decimal(18, 2)) as amount,
        currency_code,
        cast(round(amount * usd_rate, 2) as decimal(18, 2)) as amount_usd,
        created_at,
        cast(created_at as date) as payment_date,
        _loaded_at
    from converted

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
from final
