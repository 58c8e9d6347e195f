-- fct_daily_revenue is the aggregate of fct_orders' revenue orders: no date missing, none
-- extra, and every figure equal. Guards the incremental date rebuild.
with

expected as (

    select
        order_date as revenue_date,
        count(case when is_revenue_order then 1 end) as orders,
        sum(case when is_revenue_order then order_total_usd else 0 end) as revenue_usd
    from {{ ref('fct_orders') }}
    group by order_date

),

actual as (

    select
        revenue_date,
        orders,
        revenue_usd
    from {{ ref('fct_daily_revenue') }}

)

select
    coalesce(expected.revenue_date, actual.revenue_date) as revenue_date,
    expected.orders as expected_orders,
    actual.orders as actual_orders,
    expected.revenue_usd as expected_revenue_usd,
    actual.revenue_usd as actual_revenue_usd
from expected
full outer join actual
    on expected.revenue_date = actual.revenue_date
where
    expected.revenue_date is null
    or actual.revenue_date is null
    or expected.orders != actual.orders
    or expected.revenue_usd != actual.revenue_usd
