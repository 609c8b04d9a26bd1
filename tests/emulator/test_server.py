"""The emulator server: TLS, keep-alive, dispatch, clock, admin API and the command line."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from werkzeug.test import Client

from devtools.emulator import Clock, Emulator, EmulatorConfig
from devtools.emulator.admin import AdminApp

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "5e1c0f2a-7b3d-4c9e-a8f1-0b2c3d4e5f60"
HAS_BC = importlib.util.find_spec("devtools.emulator.bc_api") is not None


class EchoBC:
    """A stand-in BC app that records the client port of each request and its lifecycle calls."""

    def __init__(self, config: Any, clock: Any, validate_token: Callable[[str], dict]) -> None:
        self.validate_token = validate_token
        self.ports: list[str] = []
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        self.ports.append(environ["REMOTE_PORT"])
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]

    def admin_app(self, environ: dict, start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"bc"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(), bc_factory=EchoBC) as emulator:
        yield emulator


def admin(emu: Emulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{emu.url}/_emulator/{path}", verify=emu.ca_bundle,
                            timeout=10, **kwargs)


def bearer(emu: Emulator) -> dict[str, str]:
    return {"Authorization": "Bearer " + emu.entra.issue_access_token(CLIENT_ID, "lmints.io")}


def test_clock_advances_sets_and_freezes() -> None:
    clock = Clock()
    before = datetime.now(UTC)
    start = clock.now()
    assert start.tzinfo is not None and before <= start <= datetime.now(UTC)
    clock.advance(3600)
    assert clock.now() - start >= timedelta(hours=1)
    clock.freeze()
    clock.set(datetime(2030, 1, 1, 12, 0))  # naive = UTC
    assert clock.now() == datetime(2030, 1, 1, 12, tzinfo=UTC)
    clock.advance(-60)
    assert clock.now() == datetime(2030, 1, 1, 11, 59, tzinfo=UTC)
    clock.thaw()
    assert clock.now() >= datetime(2030, 1, 1, 11, 59, tzinfo=UTC)


def test_urls_and_certificate(emu: Emulator) -> None:
    assert emu.url.startswith("https://127.0.0.1:")
    assert emu.authority("lmints.io") == f"{emu.url}/lmints.io"
    assert emu.bc_base("lmints.io", "sandbox") == f"{emu.url}/v2.0/lmints.io/sandbox/api/v2.0"
    ca = x509.load_pem_x509_certificate(Path(emu.ca_bundle).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    port = emu.url.rsplit(":", 1)[1]
    # The server certificate is valid for localhost too.
    assert requests.get(f"https://localhost:{port}/_emulator/health", verify=emu.ca_bundle,
                        timeout=10).json()["status"] == "ok"


def test_connections_are_kept_alive(emu: Emulator) -> None:
    emu.bc.ports.clear()
    with requests.Session() as session:
        session.verify = emu.ca_bundle
        session.trust_env = False
        url = emu.bc_base("lmints.io", "production") + "/companies"
        assert session.get(url, headers=bearer(emu), timeout=10).status_code == 200
        # Request bodies the app never reads (plain and chunked) must not break the connection.
        assert session.post(url, data=b"x" * 5000, headers=bearer(emu), timeout=10).ok
        assert session.post(url, data=iter([b"a" * 10, b"b" * 10]), headers=bearer(emu), timeout=10).ok
        assert session.head(url, headers=bearer(emu), timeout=10).ok
        assert session.get(url, headers=bearer(emu), timeout=10).json() == {}
    assert len(emu.bc.ports) == 5 and len(set(emu.bc.ports)) == 1


def test_dispatch_to_bc_admin_and_entra(emu: Emulator) -> None:
    assert emu.bc.calls == ["start"] and emu.bc.validate_token == emu.entra.validate_token
    assert admin(emu, "GET", "bc/anything").text == "bc"
    assert admin(emu, "GET", "nope").status_code == 404
    keys = requests.get(f"{emu.url}/lmints.io/discovery/v2.0/keys", verify=emu.ca_bundle, timeout=10)
    assert keys.json()["keys"][0]["kid"] == emu.entra.kid
    assert requests.get(f"{emu.url}/nothing/here", verify=emu.ca_bundle, timeout=10).status_code == 404


def test_without_bc_the_api_answers_404() -> None:
    with Emulator(bc_factory=None) as emu:
        resp = requests.get(emu.bc_base("lmints.io", "production") + "/companies",
                            verify=emu.ca_bundle, timeout=10)
        assert resp.status_code == 404 and resp.json()["error"]["code"]
        assert admin(emu, "GET", "bc/x").status_code == 404
        assert admin(emu, "GET", "health").json()["bc"] is False


def test_stop_stops_bc_and_removes_the_certificates() -> None:
    emu = Emulator(bc_factory=EchoBC).start()
    ca_bundle = emu.ca_bundle
    emu.stop()
    assert emu.bc.calls == ["start", "stop"] and not os.path.exists(ca_bundle)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{emu.url}/_emulator/health", verify=False, timeout=2)


def test_admin_health(emu: Emulator) -> None:
    body = admin(emu, "GET", "health").json()
    assert body["status"] == "ok" and body["url"] == emu.url and body["bc"] is True
    assert body["tenants"] == {"lmints.io": "4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a"}


def test_admin_clock(emu: Emulator) -> None:
    before = emu.clock.now()
    moved = datetime.fromisoformat(admin(emu, "POST", "clock", json={"advance_seconds": 600}).json()["now"])
    assert timedelta(seconds=600) <= moved - before < timedelta(seconds=660)  # time runs on meanwhile
    target = "2031-05-06T07:08:09+00:00"
    set_to = datetime.fromisoformat(admin(emu, "POST", "clock", json={"set": target}).json()["now"])
    assert timedelta(0) <= set_to - datetime.fromisoformat(target) < timedelta(seconds=60)
    assert admin(emu, "GET", "clock").json()["now"].startswith("2031-05-06")
    assert admin(emu, "POST", "clock", json={"jump": 1}).status_code == 400
    emu.clock.set(datetime.now(UTC))


def test_admin_faults_replace_show_and_clear(emu: Emulator) -> None:
    spec = {"rules": [{"method": "GET", "path_regex": "companies$", "action": "error_before",
                       "status": 503, "count": 1}]}
    shown = admin(emu, "POST", "faults", json=spec).json()
    assert shown["rules"][0]["action"] == "error_before"
    url = emu.bc_base("lmints.io", "production") + "/companies"
    assert requests.get(url, headers=bearer(emu), verify=emu.ca_bundle, timeout=10).status_code == 503
    assert requests.get(url, headers=bearer(emu), verify=emu.ca_bundle, timeout=10).status_code == 200
    admin(emu, "POST", "faults", json={"rate": 1.0, "statuses": [429]})
    assert requests.get(url, headers=bearer(emu), verify=emu.ca_bundle, timeout=10).status_code == 429
    assert admin(emu, "DELETE", "faults").json()["rate"] == 0.0
    assert requests.get(url, headers=bearer(emu), verify=emu.ca_bundle, timeout=10).status_code == 200
    assert admin(emu, "POST", "faults", json={"rules": [{"action": "boom"}]}).status_code == 400


def test_admin_request_log(emu: Emulator) -> None:
    assert admin(emu, "DELETE", "requests").status_code == 200
    url = emu.bc_base("lmints.io", "production") + "/companies"
    requests.get(url, params={"$top": "2"}, headers=bearer(emu), verify=emu.ca_bundle, timeout=10)
    log = admin(emu, "GET", "requests").json()
    assert len(log) == 1 and log[0]["method"] == "GET" and log[0]["status"] == 200
    assert log[0]["path"].endswith("/companies") and log[0]["query"] == "%24top=2"
    assert log[0]["principal"] and datetime.fromisoformat(log[0]["time"])
    admin(emu, "DELETE", "requests")
    assert emu.requests == []


def test_admin_signin_switches(emu: Emulator) -> None:
    try:
        assert admin(emu, "POST", "entra/signin", json={"deny": True}).json()["deny"]
        assert emu.entra.deny_consent
        assert admin(emu, "POST", "entra/signin", json={"deny": False}).json()["deny"] is None
        assert admin(emu, "GET", "entra/signin").json()["user"] == emu.config.signin_user
    finally:
        emu.entra.deny_consent = None


def test_admin_is_loopback_only(emu: Emulator) -> None:
    client = Client(AdminApp(emu))
    assert client.get("/_emulator/health", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert client.get("/_emulator/health", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200


@pytest.mark.skipif(not HAS_BC, reason="devtools/emulator/bc_api.py is not there yet")
def test_default_emulator_wires_the_bc_api() -> None:
    from devtools.emulator.bc_api import BCApi

    emu = Emulator()
    assert isinstance(emu.bc, BCApi)


@pytest.mark.skipif(not HAS_BC, reason="devtools/emulator/bc_api.py is not there yet")
def test_command_line_prints_the_urls_and_copies_the_ca(tmp_path: Path) -> None:
    ca_out = tmp_path / "emulator-ca.pem"
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.emulator", "--port", "0", "--seed", "none",
         "--ca-out", str(ca_out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = []
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line.strip())
        url = lines[0].rsplit(" ", 1)[1]
        text = "\n".join(lines)
        assert f"{url}/v2.0/lmints.io/production/api/v2.0" in text and CLIENT_ID in text
        assert requests.get(f"{url}/_emulator/health", verify=str(ca_out), timeout=10).ok
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
