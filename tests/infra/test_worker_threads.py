"""PYTHON_THREADPOOL_THREAD_COUNT, the Python worker's pool for sync invocations, lets a queue function's
whole host.json batch run at once, and every place that sets it (the settings catalogue, Bicep's generated
JSON, main.bicep, the local settings) says the same (docs/deploy.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from connector.settings import HTTP_THREADS, SETTINGS

ROOT = Path(__file__).resolve().parents[2]
NAME = "PYTHON_THREADPOOL_THREAD_COUNT"


def queue_concurrency() -> int:
    """How many messages the host runs at once per queue function (batchSize + newBatchThreshold),
    plus the threads kept for HTTP invocations."""
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    batch = queues.get("batchSize", 16)
    return batch + queues.get("newBatchThreshold", batch // 2) + HTTP_THREADS


def test_every_queue_function_is_sync_so_the_worker_pool_bounds_it() -> None:
    blueprints = [p.read_text() for p in (ROOT / "connector").rglob("blueprint.py")]
    queue_functions = [m for text in blueprints for m in re.findall(
        r"@bp\.queue_trigger\([^)]*\)\n(?:@[^\n]*\n)*(async def|def) ", text)]
    assert queue_functions and set(queue_functions) == {"def"}


def test_the_declared_thread_count_is_host_jsons_queue_concurrency() -> None:
    [declared] = [s for s in SETTINGS if s.name == NAME]
    assert declared.host_binding  # so Bicep deploys it
    assert int(declared.default or 0) == queue_concurrency()  # derived from host.json, not repeated


def test_bicep_and_the_local_settings_deploy_that_count() -> None:
    generated = json.loads((ROOT / "infra" / "connector.json").read_text())
    assert generated["hostBindingSettings"][NAME] == str(queue_concurrency())
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert re.search(r"var connectorAppSettings = union\(\s*connector\.hostBindingSettings,", main)
    local = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert local[NAME] == str(queue_concurrency())
