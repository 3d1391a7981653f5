{#- Generic test: the model is empty (its rows are what the test reports). -#}
{% test has_no_rows(model) %}
select * from {{ model }}
{% endtest %}
