-- Small entity: a view that deduplicates the whole landing folder is cheap (DESIGN.md).
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
        _loaded_at
    from {{ source('landing', 'products') }}

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
        cast(_loaded_at as timestamp) as _loaded_at
    from source

),

ranked as (

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
        row_number() over (
            partition by product_id
            order by updated_at desc, _loaded_at desc
        ) as version_rank
    from renamed

),

final as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        currency_code,
        is_active,
        updated_at,
        _loaded_at
    from ranked
    where version_rank = 1

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
    _loaded_at
from final
