"""The README's architecture map names every module of the package, and only modules that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dagster_openai_batch"
LAYERS = ("dagster", "core", "emulator")


def _map_rows() -> dict[str, set[str]]:
    section = (ROOT / "README.md").read_text().split("## Architecture: where each concept lives")[1]
    table = section.split("\n## ", 1)[0]
    named: dict[str, set[str]] = {}
    layer = None
    for row in table.splitlines():
        heading = re.match(r"\| \*\*[^*]+\*\* \(`dagster_openai_batch/(\w+)/`", row)
        if heading:
            layer = heading.group(1)
            continue
        if layer and row.startswith("|"):
            modules = row.rsplit("|", 2)[-2]
            named.setdefault(layer, set()).update(re.findall(r"`(\w+)\.py`", modules))
    return named


def test_every_module_is_on_the_map_and_every_entry_exists():
    named = _map_rows()
    assert set(named) == set(LAYERS)
    for layer in LAYERS:
        modules = {p.stem for p in (PACKAGE / layer).glob("*.py") if not p.stem.startswith("__")}
        assert named[layer] == modules, layer
