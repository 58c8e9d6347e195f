{#-
    Through Iceberg's SparkSessionCatalog, `show table extended` reports an Iceberg table as
    `Provider: hive` and names the format only among the table properties
    (`table_type=ICEBERG`). dbt-spark decides from the provider whether a relation is
    Iceberg, misjudges these tables and fails a snapshot's second run ("is in another format
    than 'delta' or 'iceberg'"). This override adds the provider line dbt-spark looks for.
-#}
{% macro spark__list_relations_without_caching(relation) %}
    {% call statement('list_relations_without_caching', fetch_result=True) -%}
        show table extended in {{ relation.schema }} like '*'
    {%- endcall %}
    {% set listed = load_result('list_relations_without_caching').table %}
    {% set rows = [] %}
    {% for row in listed.rows %}
        {% set information = row[3] %}
        {% if 'table_type=iceberg' in information | lower and 'Provider: iceberg' not in information %}
            {% set information = information ~ '\nProvider: iceberg\n' %}
        {% endif %}
        {% do rows.append({
            listed.column_names[0]: row[0],
            listed.column_names[1]: row[1],
            listed.column_names[2]: row[2],
            listed.column_names[3]: information,
        }) %}
    {% endfor %}
    {#- agate's Table.from_object keeps the column order of the dicts. -#}
    {% do return(listed.from_object(rows)) %}
{% endmacro %}
