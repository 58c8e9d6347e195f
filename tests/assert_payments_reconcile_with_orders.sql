-- Every order's paid_usd is exactly the sum of its completed payments in fct_payments, and a
-- payment never points at an order that does not exist. A daily run checks the orders it
-- recomputed and the orders of the payments it loaded (loaded since `tests_since`), each
-- against all of its payments; `--deep` checks every order and payment.
with

orders_in_scope as (

    select order_id from {{ ref('fct_orders') }}
    where {{ loaded_in_test_scope() }}
    union
    select order_id from {{ ref('fct_payments') }}
    where {{ loaded_in_test_scope() }}

),

orders as (

    select
        order_id,
        paid_usd
    from {{ ref('fct_orders') }}
    where order_id in (select orders_in_scope.order_id from orders_in_scope)

),

payments as (

    select
        order_id,
        sum(case when payment_status = 'completed' then amount_usd else 0 end) as paid_usd
    from {{ ref('fct_payments') }}
    where order_id in (select orders_in_scope.order_id from orders_in_scope)
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
