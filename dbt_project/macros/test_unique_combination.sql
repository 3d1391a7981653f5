{#- Generic test: no two rows share the same values in `columns` (dbt_utils'
    unique_combination_of_columns, written here: no packages from the hub). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(", ") }}, count(*) as rows_with_these_values
from {{ model }}
group by {{ columns | join(", ") }}
having count(*) > 1
{% endtest %}
