{{ config(materialized='incremental', unique_key='order_id') }}

-- Big entity: each run reads only the load partitions from the high-water mark minus the
-- lookback window, keeps the latest version per order and merges it in (docs/design.md).
-- An order only moves forward in its lifecycle (seed order_statuses): a late `placed` copy
-- never undoes a delivery.
with

source as (

    select
        order_id,
        customer_id,
        order_status,
        currency,
        ordered_at,
        updated_at,
        _loaded_at,
        load_date
    from {{ source('landing', 'orders') }}
    {% if is_incremental() %}
        where {{ load_date_filter() }}
    {% endif %}

),

renamed as (

    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,
        lower(trim(order_status)) as order_status,
        upper(trim(currency)) as currency_code,
        cast(ordered_at as timestamp) as ordered_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_loaded_at as timestamp) as _loaded_at,
        cast(load_date as date) as _load_date
    from source

),

final as (

    {{ latest_version_per_key(
        'renamed',
        unique_key='order_id',
        columns=[
            'order_id', 'customer_id', 'order_status', 'currency_code', 'ordered_at',
            'updated_at', '_loaded_at', '_load_date',
        ],
        order_by=['updated_at desc', '_loaded_at desc'],
        lifecycle={'column': 'order_status', 'ranks': ref('order_statuses')},
    ) }}

)

select
    order_id,
    customer_id,
    order_status,
    currency_code,
    ordered_at,
    updated_at,
    _loaded_at,
    _load_date
from final
{{ load_ordered() }}
