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
        {{ cents_to_units('payments.amount_cents') }} as amount,
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
        amount,
        currency_code,
        {{ to_usd('amount', 'usd_rate') }} as amount_usd,
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
