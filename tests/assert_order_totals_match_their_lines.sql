-- order_total_usd rounds once after summing, line_total_usd rounds per line: they may differ
-- by at most half a cent per line, and the line count must agree. A daily run checks the
-- orders it recomputed (loaded since `tests_since`: a new or changed line recomputes its
-- order), each against all of its lines; `--deep` checks every order.
with

orders as (

    select
        order_id,
        line_count,
        order_total_usd
    from {{ ref('fct_orders') }}
    where {{ loaded_in_test_scope() }}

),

order_items as (

    select
        order_id,
        line_total_usd
    from {{ ref('fct_order_items') }}
    where order_id in (select orders.order_id from orders)

),

lines as (

    select
        order_id,
        count(*) as line_count,
        sum(line_total_usd) as lines_total_usd
    from order_items
    group by order_id

),

compared as (

    select
        orders.order_id,
        orders.line_count,
        coalesce(lines.line_count, 0) as lines_found,
        orders.order_total_usd,
        coalesce(lines.lines_total_usd, 0) as lines_total_usd
    from orders
    left join lines
        on orders.order_id = lines.order_id

)

select
    order_id,
    line_count,
    lines_found,
    order_total_usd,
    lines_total_usd
from compared
where
    line_count != lines_found
    or abs(order_total_usd - lines_total_usd) > 0.005 * line_count
