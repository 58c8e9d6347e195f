-- Row-level pricing of order lines in USD. A view: it only joins, and filters applied by
-- incremental consumers on _loaded_at reach the staging scan underneath.
with

order_items as (

    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        discount,
        _loaded_at
    from {{ ref('stg_landing__order_items') }}

),

orders as (

    select
        order_id,
        currency_code
    from {{ ref('stg_landing__orders') }}

),

currency_rates as (

    select
        currency,
        usd_rate
    from {{ ref('currency_rates') }}

),

priced as (

    select
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        order_items.quantity,
        order_items.unit_price,
        order_items.discount,
        orders.currency_code,
        currency_rates.usd_rate,
        cast(
            order_items.quantity * order_items.unit_price - order_items.discount
            as decimal(18, 2)
        ) as line_amount,
        order_items._loaded_at
    from order_items
    left join orders
        on order_items.order_id = orders.order_id
    left join currency_rates
        on orders.currency_code = currency_rates.currency

),

final as (

    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        discount,
        currency_code,
        usd_rate,
        line_amount,
        -- Unrounded USD amount: order totals round once, after summing (docs/design.md).
        {{ to_usd_exact('line_amount', 'usd_rate') }} as line_amount_usd_exact,
        {{ to_usd('line_amount', 'usd_rate') }} as line_total_usd,
        _loaded_at
    from priced

)

select
    order_item_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    discount,
    currency_code,
    usd_rate,
    line_amount,
    line_amount_usd_exact,
    line_total_usd,
    _loaded_at
from final
