"""The Dagster home a command keeps its runs in: `.dagster_home/` of the project, which `make`
names in `.env` (`make home`), so that the CLI's runs show in `make dev`'s UI."""

import os
import sys
from collections.abc import Mapping

NO_HOME = (
    "DAGSTER_HOME is not set (no line for it in .env?): this command's runs go to a temporary "
    "home, not the one `make dev` shows; `make home` adds the project's home to .env again"
)


def say_when_history_is_temporary(environ: Mapping[str, str] | None = None) -> None:
    """One line on stderr when DAGSTER_HOME is unset, as after `cp .env.example .env` over the
    line `make` wrote: Dagster then keeps the runs in a temporary folder, and says nothing."""
    if not (os.environ if environ is None else environ).get("DAGSTER_HOME"):
        print(NO_HOME, file=sys.stderr)
