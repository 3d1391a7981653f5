{#-
  Months, for the facts that are built one month (or a range of months) at a time.

  A Dagster run of a fact partition passes the months it rebuilds as dbt vars:
    from_month  the first month, YYYY-MM
    to_month    the month after the last one, YYYY-MM (exclusive)
  Without them (`dbt build` by hand) every month is rebuilt.

  Which month a trip belongs to: the month of its pickup. A file holds the trips of its own month
  and a few that began on the evening before it (pickup in the previous month); any other pickup
  (2008, 2088, next month) is a wrong clock, and staging drops the row and counts it
  (`stg_trips_outside_file_months`). So month M's trips are all in the files of M and M + 1: a
  month is rebuilt from two files per colour, and gives the same rows as a full rebuild.
-#}

{#- {from, to, files_to} as YYYY-MM strings, or none without vars. The first month's trips
    that began the evening before (2018-12-31) have no partition of their own: the first month
    takes them. -#}
{% macro trip_window() %}
    {%- set start = var('from_month', '') -%}
    {%- if not start -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if start == var('first_month') -%}
        {%- set start = add_months(start, -1) -%}
    {%- endif -%}
    {%- set end = var('to_month') -%}
    {{ return({'from': start, 'to': end, 'files_to': add_months(end, 1)}) }}
{% endmacro %}

{% macro add_months(month, months) -%}
    {%- set number = (month[:4] | int) * 12 + (month[5:7] | int) - 1 + months -%}
    {{ return('%04d-%02d' % (number // 12, number % 12 + 1)) }}
{%- endmacro %}

{#- A timestamp's month as a number: year * 12 + month - 1. -#}
{% macro month_number(timestamp) -%}
    (extract(year from {{ timestamp }}) * 12 + extract(month from {{ timestamp }}) - 1)
{%- endmacro %}

{#- The month of the file a row came from (`green_tripdata_2019-01.csv`), as a number. -#}
{% macro file_month_number(prefix) -%}
    (cast(substring(filename, {{ prefix | length + 1 }}, 4) as {{ dbt.type_int() }}) * 12
        + cast(substring(filename, {{ prefix | length + 6 }}, 2) as {{ dbt.type_int() }}) - 1)
{%- endmacro %}

{#- True for rows whose pickup lies in their file's month or the month before it. -#}
{% macro in_file_months(pickup, prefix) -%}
    coalesce({{ month_number(pickup) }} between {{ file_month_number(prefix) }} - 1
        and {{ file_month_number(prefix) }}, false)
{%- endmacro %}

{#- `timestamp` within the window's months (a condition the database can prune on). -#}
{% macro in_window(timestamp, window) -%}
    {{ timestamp }} >= '{{ window.from }}-01' and {{ timestamp }} < '{{ window.to }}-01'
{%- endmacro %}

{#-
  Pre-hook of a month-built model: in an incremental run, delete the months about to be
  inserted again (every row without a window). dbt runs it in the model's transaction, so readers
  never see a month missing.
-#}
{% macro delete_window(timestamp) %}
    {%- set window = trip_window() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {% if window %}{{ in_window(timestamp, window) }}{% else %}true{% endif %}
    {%- endif -%}
{% endmacro %}

{#- The window a model's select reads: none (every month) when the table is built anew. -#}
{% macro select_window() %}
    {{ return(trip_window() if is_incremental() else none) }}
{% endmacro %}

{#- dbt config of a month-built model: appended to after the pre-hook's delete (BigQuery's
    merge without a unique key is an insert). -#}
{% macro monthly_strategy() %}
    {{ return('merge' if target.type == 'bigquery' else 'append') }}
{% endmacro %}
