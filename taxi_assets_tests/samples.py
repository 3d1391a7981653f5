"""The real TLC files the tests load: the month the repository ships (`sample_source/`) and the
samples in `data/real/` (provenance in its README)."""

from pathlib import Path

REAL_DATA = Path(__file__).parent / "data" / "real"
SAMPLE_SOURCE = Path(__file__).parent.parent / "sample_source"


def real_sample(name: str) -> Path:
    """A real TLC file: the shipped full month, or one of the samples in `data/real`."""
    shipped = SAMPLE_SOURCE / name.split("_")[0] / name
    return shipped if shipped.exists() else REAL_DATA / name
