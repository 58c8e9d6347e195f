-- A customer never pays more than an order costs: completed payments (paid_usd) stay within
-- order_total_usd, give or take the half cent each side may round (totals round once, every
-- payment rounds on its own). A payment larger than its order is an upstream error, and it
-- must stop the run before any mart is published. A row check: a daily run checks the orders
-- it recomputed (loaded since `tests_since`: a new payment recomputes its order); `--deep`,
-- every order.
with

orders as (

    select
        order_id,
        order_total_usd,
        paid_usd,
        payment_count
    from {{ ref('fct_orders') }}
    where {{ loaded_in_test_scope() }}

),

overpaid as (

    select
        order_id,
        order_total_usd,
        paid_usd,
        paid_usd - order_total_usd as overpaid_usd
    from orders
    where paid_usd > order_total_usd + 0.01 * coalesce(payment_count, 0)

)

select
    order_id,
    order_total_usd,
    paid_usd,
    overpaid_usd
from overpaid
