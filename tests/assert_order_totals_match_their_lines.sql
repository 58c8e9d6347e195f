-- order_total_usd rounds once after summing, line_total_usd rounds per line: they may differ
-- by at most half a cent per line, and the line count must agree.
with

orders as (

    select
        order_id,
        line_count,
        order_total_usd
    from {{ ref('fct_orders') }}

),

lines as (

    select
        order_id,
        count(*) as line_count,
        sum(line_total_usd) as lines_total_usd
    from {{ ref('fct_order_items') }}
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
