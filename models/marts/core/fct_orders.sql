{{
    config(
        materialized='incremental',
        unique_key='order_id',
        partition_by=date_partition('order_date')
    )
}}

-- One row per order, latest version, with its totals and payments in USD. Incremental: an
-- order is recomputed when its order row, a line or a payment was loaded since the
-- high-water mark minus the lookback window.
with

{% if is_incremental() %}
    {%- set watermark = loaded_at_watermark() -%}
    -- The orders this run recomputes: an order row, a line or a payment loaded since the
    -- watermark (a literal, so these reads prune). Every input below reads only these keys.
    touched_orders as (

        select touched.order_id from {{ ref('stg_landing__orders') }} as touched
        where touched._loaded_at > {{ watermark }}
        union
        select touched.order_id from {{ ref('int_order_items_summed_to_orders') }} as touched
        where touched._loaded_at > {{ watermark }}
        union
        select touched.order_id from {{ ref('int_payments_summed_to_orders') }} as touched
        where touched._loaded_at > {{ watermark }}

    ),
{% endif %}

orders as (

    select
        order_id,
        customer_id,
        order_status,
        currency_code,
        ordered_at,
        updated_at,
        _loaded_at
    from {{ ref('stg_landing__orders') }}
    {% if is_incremental() %}
        where order_id in (select touched_orders.order_id from touched_orders)
    {% endif %}

),

order_totals as (

    select
        order_id,
        line_count,
        item_count,
        order_total_usd,
        _loaded_at
    from {{ ref('int_order_items_summed_to_orders') }}
    {% if is_incremental() %}
        where order_id in (select touched_orders.order_id from touched_orders)
    {% endif %}

),

payment_totals as (

    select
        order_id,
        payment_count,
        paid_usd,
        refunded_usd,
        _loaded_at
    from {{ ref('int_payments_summed_to_orders') }}
    {% if is_incremental() %}
        where order_id in (select touched_orders.order_id from touched_orders)
    {% endif %}

),

order_statuses as (

    select
        order_status,
        is_revenue
    from {{ ref('order_statuses') }}

),

joined as (

    select
        orders.order_id,
        orders.customer_id,
        cast(orders.ordered_at as date) as order_date,
        orders.ordered_at,
        orders.order_status,
        order_statuses.is_revenue as is_revenue_order,
        orders.currency_code,
        coalesce(order_totals.line_count, 0) as line_count,
        coalesce(order_totals.item_count, 0) as item_count,
        coalesce(order_totals.order_total_usd, 0) as order_total_usd,
        coalesce(payment_totals.payment_count, 0) as payment_count,
        coalesce(payment_totals.paid_usd, 0) as paid_usd,
        coalesce(payment_totals.refunded_usd, 0) as refunded_usd,
        orders.updated_at,
        greatest(
            orders._loaded_at,
            coalesce(order_totals._loaded_at, orders._loaded_at),
            coalesce(payment_totals._loaded_at, orders._loaded_at)
        ) as _loaded_at
    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join payment_totals
        on orders.order_id = payment_totals.order_id
    left join order_statuses
        on orders.order_status = order_statuses.order_status

),

final as (

    select
        order_id,
        customer_id,
        order_date,
        ordered_at,
        order_status,
        is_revenue_order,
        currency_code,
        cast(line_count as bigint) as line_count,
        cast(item_count as bigint) as item_count,
        cast(order_total_usd as decimal(18, 2)) as order_total_usd,
        cast(payment_count as bigint) as payment_count,
        cast(paid_usd as decimal(18, 2)) as paid_usd,
        cast(refunded_usd as decimal(18, 2)) as refunded_usd,
        order_total_usd > 0 and paid_usd >= order_total_usd as is_fully_paid,
        updated_at,
        _loaded_at
    from joined

)

select
    order_id,
    customer_id,
    order_date,
    ordered_at,
    order_status,
    is_revenue_order,
    currency_code,
    line_count,
    item_count,
    order_total_usd,
    payment_count,
    paid_usd,
    refunded_usd,
    is_fully_paid,
    updated_at,
    _loaded_at
from {{ changed_rows('final', 'order_id') }}
{{ load_ordered() }}
