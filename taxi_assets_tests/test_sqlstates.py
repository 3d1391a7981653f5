"""Which PostgreSQL errors a retry may cure, by their SQLSTATE (test_postgres_errors.py raises
them on a real server)."""

import pytest

from taxi_assets.warehouses.postgres_errors import is_transient

pytestmark = pytest.mark.unit


def test_what_a_retry_may_cure_by_sqlstate():
    assert all(is_transient(s) for s in (None, "08001", "40P01", "53300", "55P03", "57014"))
    assert not any(is_transient(s) for s in ("53200", "53100", "42501", "23505", "22003", "54000"))
