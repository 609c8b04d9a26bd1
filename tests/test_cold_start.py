"""Cold start: the host indexes the app by importing `function_app`; the storage, BC, sign-in and crypto
libraries load on an invocation's first use, not then (their cost belongs to `bench/`, not here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFERRED = ("msal", "azure.data.tables", "azure.storage.queue", "azure.storage.blob", "azure.identity",
            "cryptography", "requests", "pydantic", "connector.runtime")


def loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running `statement` in the project root."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_function_app_loads_no_storage_bc_or_crypto_library():
    loaded = loaded_after("import function_app")
    assert "connector.telemetry" in loaded  # the blueprints were imported
    assert sorted(m for m in DEFERRED if m in loaded) == []


def test_the_deferred_libraries_are_the_ones_the_core_loads():
    """So the test above checks names that matter: the runtime does load them."""
    loaded = loaded_after("import function_app\nimport connector.runtime")
    assert {"msal", "azure.data.tables", "azure.storage.queue", "cryptography", "connector.runtime"} <= loaded
