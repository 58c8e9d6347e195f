{{ config(materialized='incremental', unique_key='revenue_date') }}

-- Revenue per order date over revenue orders (docs/design.md). Incremental: when an order changes
-- (a new order, or an old one cancelled or returned) its whole order date is recomputed from
-- fct_orders; other dates are left alone.
with

orders as (

    select
        order_id,
        customer_id,
        order_date,
        order_total_usd,
        is_revenue_order,
        _loaded_at
    from {{ ref('fct_orders') }}

),

{% if is_incremental() %}
    touched_dates as (

        select distinct orders.order_date
        from orders
        where orders._loaded_at > {{ loaded_at_watermark() }}

    ),
{% endif %}

daily as (

    select
        order_date as revenue_date,
        count(case when is_revenue_order then order_id end) as orders,
        sum(case when is_revenue_order then order_total_usd else 0 end) as revenue_usd,
        count(distinct case when is_revenue_order then customer_id end) as customers,
        max(_loaded_at) as _loaded_at
    from orders
    {% if is_incremental() %}
        where order_date in (select touched_dates.order_date from touched_dates)
    {% endif %}
    group by order_date

),

final as (

    select
        revenue_date,
        cast(orders as bigint) as orders,
        cast(revenue_usd as decimal(18, 2)) as revenue_usd,
        cast(customers as bigint) as customers,
        _loaded_at
    from daily

)

select
    revenue_date,
    orders,
    revenue_usd,
    customers,
    _loaded_at
from {{ changed_rows('final', 'revenue_date') }}
{{ load_ordered() }}
