-- The latest version of every customer with its PII masked (macro mask_pii): what the
-- snapshot and everything below staging store, so no raw email leaves staging.
with

customers as (

    select
        customer_id,
        email,
        first_name,
        last_name,
        country_code,
        created_at,
        updated_at,
        _loaded_at
    from {{ ref('stg_landing__customers') }}

),

final as (

    select
        customer_id,
        {{ mask_pii('email') }} as email,
        first_name,
        last_name,
        country_code,
        created_at,
        updated_at,
        _loaded_at
    from customers

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
