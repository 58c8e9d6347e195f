-- One row per product (current version) with its list price converted to USD.
with

products as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        currency_code,
        is_active,
        updated_at
    from {{ ref('stg_landing__products') }}

),

currency_rates as (

    select
        currency,
        usd_rate
    from {{ ref('currency_rates') }}

),

final as (

    select
        products.product_id,
        products.sku,
        products.product_name,
        products.category,
        products.unit_price,
        products.currency_code,
        {{ to_usd('products.unit_price', 'currency_rates.usd_rate') }} as unit_price_usd,
        products.is_active,
        products.updated_at
    from products
    left join currency_rates
        on products.currency_code = currency_rates.currency

)

select
    product_id,
    sku,
    product_name,
    category,
    unit_price,
    currency_code,
    unit_price_usd,
    is_active,
    updated_at
from final
