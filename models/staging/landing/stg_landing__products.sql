{{ config(materialized='incremental', unique_key='product_id') }}

-- Incremental like the facts although small: the warehouse keeps every product it ever
-- saw, so a retention job that deletes old landing partitions changes nothing downstream.
with

source as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        currency,
        is_active,
        updated_at,
        _loaded_at,
        load_date
    from {{ source('landing', 'products') }}
    {% if is_incremental() %}
        where {{ load_date_filter() }}
    {% endif %}

),

renamed as (

    select
        cast(product_id as bigint) as product_id,
        trim(sku) as sku,
        trim(product_name) as product_name,
        lower(trim(category)) as category,
        cast(unit_price as decimal(12, 2)) as unit_price,
        upper(trim(currency)) as currency_code,
        cast(is_active as boolean) as is_active,
        cast(updated_at as timestamp) as updated_at,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='product_id',
        columns=[
            'product_id', 'sku', 'product_name', 'category', 'unit_price', 'currency_code',
            'is_active', 'updated_at', '_loaded_at', '_load_date',
        ],
        order_by=['updated_at desc', '_loaded_at desc'],
    ) }}

)

select
    product_id,
    sku,
    product_name,
    category,
    unit_price,
    currency_code,
    is_active,
    updated_at,
    _loaded_at,
    _load_date
from final
{{ load_ordered() }}
