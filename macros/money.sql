{#-
    Money helpers. Every `_usd` column in the warehouse is converted with the rate of the
    `currency_rates` seed and rounded half up to cents once (docs/design.md, "Definitions").
-#}

{#- An amount in some currency times its USD rate, rounded to cents: DECIMAL(18,2). -#}
{% macro to_usd(amount, usd_rate) -%}
    cast(round(({{ amount }}) * ({{ usd_rate }}), 2) as decimal(18, 2))
{%- endmacro %}

{#-
    The same product unrounded, for sums that must round once after adding (order totals):
    eight decimals hold every rate of the seed times any cent amount exactly.
-#}
{% macro to_usd_exact(amount, usd_rate) -%}
    cast(({{ amount }}) * ({{ usd_rate }}) as decimal(30, 8))
{%- endmacro %}

{#- Minor units to units, exactly: multiplying, because decimal division is inexact on some engines. -#}
{% macro cents_to_units(cents) -%}
    cast(cast({{ cents }} as decimal(18, 0)) * cast(0.01 as decimal(3, 2)) as decimal(18, 2))
{%- endmacro %}
