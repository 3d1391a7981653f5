"""The one place where a statement this code builds becomes a query for psycopg's types."""

from typing import LiteralString, cast


def built_sql(text: str) -> LiteralString:
    """A statement this code wrote: its own text, with identifiers and literals quoted by the
    driver (`quote`, `literal`) and parameters as `%s`; never a value pasted in unquoted.

    psycopg types a query as `LiteralString` so that a checker catches values formatted into
    SQL; a statement assembled with f-strings from quoted names is safe but is a `str` to the
    checker. The text goes to the server unchanged."""
    return cast(LiteralString, text)
