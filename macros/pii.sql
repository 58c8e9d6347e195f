{#-
    Personal data (columns with `meta: {pii: true}`) is stored hashed in every relation below
    staging: staging keeps the landing value, everything built from it holds its SHA-256.
    A privileged target (one listed in the var `pii_privileged_targets`) keeps the value.
    The hash is the same on every engine: SHA-256 of the UTF-8 bytes, lower-case hex.
-#}
{% macro mask_pii(column) -%}
    {%- if target.name in var('pii_privileged_targets', []) -%}
        {{ column }}
    {%- else -%}
        {{ sha256_hex(column) }}
    {%- endif -%}
{%- endmacro %}

{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex', 'commerce')(expression)) }}
{%- endmacro %}

{% macro default__sha256_hex(expression) -%}
    sha256(cast({{ expression }} as varchar))
{%- endmacro %}

{% macro spark__sha256_hex(expression) -%}
    sha2(cast({{ expression }} as string), 256)
{%- endmacro %}
