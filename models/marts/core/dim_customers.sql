-- dim_customers v2 (the latest; relation marts.dim_customers): one row per customer (current
-- version from the SCD2 snapshot) with lifetime order figures. v2 carries no names: see
-- dim_customers_v1.sql for the deprecated version that still does.
with

customers as (

    select
        customer_id,
        email,
        country_code,
        created_at,
        updated_at,
        dbt_valid_from
    from {{ ref('snap_customers') }}
    where dbt_valid_to is null

),

orders as (

    select
        customer_id,
        order_date,
        order_total_usd,
        is_revenue_order
    from {{ ref('fct_orders') }}

),

customer_orders as (

    select
        customer_id,
        min(order_date) as first_order_date,
        count(case when is_revenue_order then 1 end) as lifetime_orders,
        sum(case when is_revenue_order then order_total_usd else 0 end) as lifetime_revenue_usd
    from orders
    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.email,
        customers.country_code,
        customers.created_at,
        customer_orders.first_order_date,
        cast(coalesce(customer_orders.lifetime_orders, 0) as bigint) as lifetime_orders,
        cast(
            coalesce(customer_orders.lifetime_revenue_usd, 0) as decimal(18, 2)
        ) as lifetime_revenue_usd,
        customers.updated_at,
        customers.dbt_valid_from as current_version_since
    from customers
    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

)

select
    customer_id,
    email,
    country_code,
    created_at,
    first_order_date,
    lifetime_orders,
    lifetime_revenue_usd,
    updated_at,
    current_version_since
from final
