{{ config(materialized='incremental', unique_key='customer_id') }}

-- Incremental like the facts although small: the warehouse keeps every customer it ever
-- saw, so a retention job that deletes old landing partitions changes nothing downstream.
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
        _loaded_at,
        load_date
    from {{ source('landing', 'customers') }}
    {% if is_incremental() %}
        where {{ load_date_filter() }}
    {% endif %}

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
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='customer_id',
        columns=[
            'customer_id', 'email', 'first_name', 'last_name', 'country_code', 'created_at',
            'updated_at', '_loaded_at', '_load_date',
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
    _loaded_at,
    _load_date
from final
{{ load_ordered() }}
