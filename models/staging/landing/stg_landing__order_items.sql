{{ config(materialized='incremental', unique_key='order_item_id') }}

-- Big entity, read incrementally by load partition. Lines carry no updated_at: the copy
-- from the latest load wins.
with

source as (

    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        discount,
        _loaded_at,
        load_date
    from {{ source('landing', 'order_items') }}
    {% if is_incremental() %}
        where {{ load_date_filter() }}
    {% endif %}

),

renamed as (

    select
        cast(order_item_id as bigint) as order_item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(12, 2)) as unit_price,
        cast(coalesce(discount, 0) as decimal(12, 2)) as discount,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='order_item_id',
        columns=[
            'order_item_id', 'order_id', 'product_id', 'quantity', 'unit_price', 'discount',
            '_loaded_at', '_load_date',
        ],
        order_by=['_loaded_at desc'],
    ) }}

)

select
    order_item_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    discount,
    _loaded_at,
    _load_date
from final
{{ load_ordered() }}
