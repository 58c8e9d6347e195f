{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='order_item_id',
        on_schema_change='append_new_columns'
    )
}}

-- Big entity, read incrementally by load partition. Lines carry no updated_at: the latest
-- load wins, and the window always holds the newest copy of any line it contains.
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
        where load_date >= {{ load_date_floor() }}
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

ranked as (

    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        discount,
        _loaded_at,
        _load_date,
        row_number() over (
            partition by order_item_id
            order by _loaded_at desc
        ) as version_rank
    from renamed

),

final as (

    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        unit_price,
        discount,
        _loaded_at,
        _load_date
    from ranked
    where version_rank = 1

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
