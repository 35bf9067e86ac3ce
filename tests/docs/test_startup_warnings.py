"""Loading the demo's definitions prints no warning of ours: only the notes Dagster prints for any
project that uses components."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Dagster's own notes when it loads a components folder (any dg project gets them).
DAGSTER_COMPONENTS_NOTES = re.compile(
    r"`(LocalFileCodeReference|CodeReferencesMetadataValue|load_definitions_from_modules?)`"
)


def test_loading_the_definitions_warns_only_as_any_components_project(tmp_path: Path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONWARNINGS": "default"}
    env.pop("OPENAI_API_KEY", None)
    loaded = subprocess.run(
        [sys.executable, "-c", "import definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    warnings = [line for line in loaded.stderr.splitlines() if "Warning:" in line]
    assert warnings, "expected Dagster's component notes (is PYTHONWARNINGS honoured?)"
    ours = [line for line in warnings if not DAGSTER_COMPONENTS_NOTES.search(line)]
    assert ours == []
