{{ config(materialized='incremental', unique_key='order_item_id') }}

-- One row per order line, priced in USD. Incremental on the line's load timestamp.
with

order_items_priced as (

    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        discount,
        currency_code,
        line_amount,
        line_total_usd,
        _loaded_at
    from {{ ref('int_order_items_priced') }}
    {% if is_incremental() %}
        where _loaded_at > {{ loaded_at_watermark() }}
    {% endif %}

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
        line_amount,
        line_total_usd,
        _loaded_at
    from order_items_priced

)

select
    order_item_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    discount,
    currency_code,
    line_amount,
    line_total_usd,
    _loaded_at
from {{ changed_rows('final', 'order_item_id') }}
{{ load_ordered() }}
