-- Every order's paid_usd is exactly the sum of its completed payments in fct_payments, and a
-- payment never points at an order that does not exist.
with

orders as (

    select
        order_id,
        paid_usd
    from {{ ref('fct_orders') }}

),

payments as (

    select
        order_id,
        sum(case when payment_status = 'completed' then amount_usd else 0 end) as paid_usd
    from {{ ref('fct_payments') }}
    group by order_id

),

compared as (

    select
        coalesce(orders.order_id, payments.order_id) as order_id,
        orders.order_id is null as is_orphan_payment,
        coalesce(orders.paid_usd, 0) as order_paid_usd,
        coalesce(payments.paid_usd, 0) as payments_paid_usd
    from orders
    full outer join payments
        on orders.order_id = payments.order_id

)

select
    order_id,
    is_orphan_payment,
    order_paid_usd,
    payments_paid_usd
from compared
where is_orphan_payment or order_paid_usd != payments_paid_usd
