"""`python -m devtools.localhost` and the settings handling shared with `devtools.run`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from devtools.localhost.cli import load_settings, settings_file
from devtools.run import uses_real_bc

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def test_settings_file_prefers_local_then_example(tmp_path: Path) -> None:
    assert settings_file(tmp_path) is None
    (tmp_path / "local.settings.example.json").write_text("{}")
    assert settings_file(tmp_path) == tmp_path / "local.settings.example.json"
    (tmp_path / "local.settings.json").write_text("{}")
    assert settings_file(tmp_path) == tmp_path / "local.settings.json"
    assert settings_file(tmp_path, tmp_path / "x.json") == tmp_path / "x.json"


def test_settings_do_not_override_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file", "N": 3}}))
    environ = {"A": "env"}
    load_settings(path, environ)
    assert environ == {"A": "env", "B": "file", "N": "3"}


def test_real_bc_is_a_non_loopback_api_host() -> None:
    assert uses_real_bc({"BC_API_HOST": "https://api.businesscentral.dynamics.com"})
    assert not uses_real_bc({"BC_API_HOST": "https://127.0.0.1:8443"})
    assert not uses_real_bc({"BC_API_HOST": "https://localhost:8443"})
    assert not uses_real_bc({})


def test_module_serves_until_sigterm(tmp_path: Path, azurite) -> None:
    settings = tmp_path / "settings.json"
    values = {"SampleStorage": azurite.connection_string, "SAMPLE_QUEUE": "cli"}
    values["SAMPLE_SCHEDULE"] = "0 0 0 1 1 *"
    settings.write_text(json.dumps({"Values": values}))
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0"}))
    cmd = [sys.executable, "-m", "devtools.localhost", "--port", "0", "--app", "sample_app",
           "--settings", str(settings), "--host-json", str(host_json)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("Local Functions host on http://127.0.0.1:"), first + proc.stderr.read()
        url = first.split(" on ")[1].split()[0]
        assert requests.get(f"{url}/api/items/9", timeout=5).json()["route"] == {"id": "9"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert "items (httpTrigger) succeeded" in proc.stderr.read()
