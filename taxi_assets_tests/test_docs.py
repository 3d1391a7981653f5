"""The documentation against the code, in pure Python (no server, no database): the README's
layout names every module and only paths that exist, its configuration table lists exactly the
variables the project reads, and every relative link of README.md, CONTRIBUTING.md and docs/*.md
points to a file that exists and, for an `#anchor`, to one of its headings."""

import re
from pathlib import Path

import pytest

from taxi_assets.variables import VARIABLES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
# The packages whose every module the layout must name.
PACKAGES = ("taxi_assets", "taxi_assets/warehouses")
# A layout line indented this far or more continues the description above it.
DESCRIPTION_COLUMN = 24
FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the text may wrap onto the next line.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)
README_LINES = 250


def section(text: str, title: str) -> str:
    """The body of the section `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def layout_paths(readme: str) -> list[str]:
    """The paths the Layout section's tree names, from the repository root (`taxi_assets/` and
    its indented entries give `taxi_assets/assets.py`, …)."""
    tree = re.search(r"```\n(.*?)```", section(readme, "Layout"), re.S)
    assert tree, "the Layout section has no code block"
    paths: list[str] = []
    folders: list[str] = []
    for line in tree.group(1).splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= DESCRIPTION_COLUMN:
            continue
        depth = indent // 2
        entry = line.split()[0]
        folders = folders[:depth]
        paths.append("/".join([*folders, entry.rstrip("/")]))
        if entry.endswith("/"):
            folders.append(entry.rstrip("/"))
    return paths


def test_the_layout_names_every_module_and_nothing_that_does_not_exist():
    named = layout_paths(README.read_text())
    modules = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).glob("*.py")
        if path.name != "__init__.py"
    }

    assert [path for path in named if not (ROOT / path).exists()] == []
    assert sorted(modules - set(named)) == []


def variables_in_env_example() -> set[str]:
    """The names of `.env.example`'s `NAME=${NAME:-…}` lines."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=\$\{\1:-", text, re.M))


def configuration_table(readme: str) -> list[str]:
    """The variable of each row of the configuration table, one per row."""
    rows = [line for line in section(readme, "Configuration").splitlines() if line.startswith("|")]
    names = []
    for row in rows[2:]:  # the header and its rule
        cell = row.split("|")[1].strip()
        assert re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cell), f"one variable per row, not {cell}"
        names.append(cell.strip("`"))
    return names


def test_the_configuration_table_lists_exactly_the_variables_read():
    # `VARIABLES` holds names, or objects with a `.name`.
    read = {getattr(variable, "name", variable) for variable in VARIABLES}
    expected = read | variables_in_env_example()
    documented = configuration_table(README.read_text())

    assert sorted(name for name in set(documented) if documented.count(name) > 1) == []
    assert sorted(expected - set(documented)) == [], "variables without a row"
    assert sorted(set(documented) - expected) == [], "rows of variables nothing reads"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, each space
    a `-` (markup such as backticks goes with the punctuation)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks); a repeated one gets `-1`, `-2`…"""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        result.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return result


def relative_links(page: Path) -> list[str]:
    """The targets of a page's links and images, outside code, but web addresses."""
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no such heading in {file.relative_to(ROOT)}")
    return broken


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) > 3  # README, CONTRIBUTING and the docs pages
    assert {str(page.relative_to(ROOT)): broken_links(page) for page in PAGES} == {
        str(page.relative_to(ROOT)): [] for page in PAGES
    }


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) < README_LINES
    assert relative_links(README)  # it links to the pages


def test_the_slugs_follow_githubs_rules():
    assert slug("The cloud path: BigQuery + GCS") == "the-cloud-path-bigquery--gcs"
    assert (
        slug("The seeds' first flow: `getting_started`") == "the-seeds-first-flow-getting_started"
    )
    assert (
        slug("A sensor for new months (off by default)") == "a-sensor-for-new-months-off-by-default"
    )
