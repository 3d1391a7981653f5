"""Settings that cannot be used are refused when they are read, in one line naming the
variable."""

import pytest

from taxi_assets.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon"])
def test_a_dead_connection_time_that_is_no_whole_number_of_seconds_is_a_setting_error(value):
    with pytest.raises(ValueError) as raised:
        Settings.from_env({"TAXI_PG_DEAD_CONNECTION_SECONDS": value})

    assert str(raised.value) == (
        f"TAXI_PG_DEAD_CONNECTION_SECONDS={value!r}: a whole number of seconds, at least 1"
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TAXI_SOURCE_KIND", "parquet", "TAXI_SOURCE_KIND='parquet': one of auto, release, tlc"),
        ("TAXI_TLC_URL", "s3://nyc-tlc/trip data", "TAXI_TLC_URL='s3://nyc-tlc/trip data': s3://"),
    ],
)
def test_a_source_setting_of_another_kind_says_so_at_start_up(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError) as raised:
        Settings.from_env()

    assert str(raised.value).startswith(says)
