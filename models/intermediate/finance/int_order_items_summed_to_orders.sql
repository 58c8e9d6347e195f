{{ config(materialized='incremental', unique_key='order_id') }}

-- Order totals from their lines. Incremental: only orders with a line loaded since the
-- high-water mark (minus the lookback) are re-summed, from all of their lines.
with

order_items_priced as (

    select
        order_id,
        quantity,
        line_amount_usd_exact,
        _loaded_at
    from {{ ref('int_order_items_priced') }}
    {% if is_incremental() %}
        where
            order_id >= {{ touched_key_floor(ref('int_order_items_priced'), 'order_id') }}
            and order_id in (
                {{ keys_loaded_since_watermark(ref('int_order_items_priced'), 'order_id') }}
            )
    {% endif %}

),

final as (

    select
        order_id,
        count(*) as line_count,
        cast(sum(quantity) as bigint) as item_count,
        cast(round(sum(line_amount_usd_exact), 2) as decimal(18, 2)) as order_total_usd,
        max(_loaded_at) as _loaded_at
    from order_items_priced
    group by order_id

)

select
    order_id,
    line_count,
    item_count,
    order_total_usd,
    _loaded_at
from {{ changed_rows('final', 'order_id') }}
{{ load_ordered() }}
