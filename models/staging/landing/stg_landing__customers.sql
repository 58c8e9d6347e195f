-- Small entity: a view that deduplicates the whole landing folder is cheap (docs/design.md).
with

source as (

    select
        customer_id,
        email,
        first_name,
        last_name,
        country_code,
        created_at,
        updated_at,
        _loaded_at
    from {{ source('landing', 'customers') }}

),

renamed as (

    select
        cast(customer_id as bigint) as customer_id,
        lower(trim(email)) as email,
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        upper(trim(country_code)) as country_code,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_loaded_at as timestamp) as _loaded_at
    from source

),

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='customer_id',
        columns=[
            'customer_id', 'email', 'first_name', 'last_name', 'country_code', 'created_at',
            'updated_at', '_loaded_at',
        ],
        order_by=['updated_at desc', '_loaded_at desc'],
    ) }}

)

select
    customer_id,
    email,
    first_name,
    last_name,
    country_code,
    created_at,
    updated_at,
    _loaded_at
from final
