"""The emulator keeps its own copy of the service's rules; it must agree with the library's."""

import subprocess
import sys

from dagster_openai_batch.core import vocabulary
from dagster_openai_batch.emulator import service_rules
from dagster_openai_batch.emulator.flavour import OPENAI


def test_emulator_imports_nothing_from_the_integration():
    # The package's __init__ loads its names lazily (dagster_openai_batch._lazy), nothing more.
    code = (
        "import sys, dagster_openai_batch.emulator;"
        "print(sorted(m for m in sys.modules if m.startswith('dagster_openai_batch.')"
        " and not m.startswith('dagster_openai_batch.emulator')"
        " and m != 'dagster_openai_batch._lazy'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_service_rules_agree_with_the_library_vocabulary():
    assert service_rules.ENDPOINTS == vocabulary.BATCH_ENDPOINTS
    assert service_rules.STATUSES == vocabulary.BATCH_STATUSES
    assert service_rules.CANCELLABLE == vocabulary.CANCELLABLE_STATUSES
    assert service_rules.TERMINAL == vocabulary.TERMINAL_STATUSES
    assert service_rules.DEFAULT_MODELS == vocabulary.DEFAULT_MODELS
    assert service_rules.MAX_UPLOAD_BYTES == vocabulary.MAX_UPLOAD_BYTES
    for name in (
        "COMPLETION_WINDOW",
        "MAX_EMBEDDING_INPUTS",
        "MAX_METADATA_PAIRS",
        "MAX_METADATA_KEY_CHARS",
        "MAX_METADATA_VALUE_CHARS",
    ):
        assert getattr(service_rules, name) == getattr(vocabulary, name), name
    assert OPENAI.max_requests_per_file == vocabulary.MAX_REQUESTS_PER_FILE
