-- dim_customers v1 (deprecated, relation marts.dim_customers_v1): v2 plus the customer's
-- first and last name, for consumers still migrating. The figures are v2's, never recomputed.
with

customers as (

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
    from {{ ref('dim_customers', v=2) }}

),

names as (

    select
        customer_id,
        first_name,
        last_name
    from {{ ref('snap_customers') }}
    where dbt_valid_to is null

),

final as (

    select
        customers.customer_id,
        customers.email,
        names.first_name,
        names.last_name,
        customers.country_code,
        customers.created_at,
        customers.first_order_date,
        customers.lifetime_orders,
        customers.lifetime_revenue_usd,
        customers.updated_at,
        customers.current_version_since
    from customers
    left join names
        on customers.customer_id = names.customer_id

)

select
    customer_id,
    email,
    first_name,
    last_name,
    country_code,
    created_at,
    first_order_date,
    lifetime_orders,
    lifetime_revenue_usd,
    updated_at,
    current_version_since
from final
