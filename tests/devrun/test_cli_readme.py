"""The README's quick start, as a newcomer follows it (issue 27): `make run` (its launcher, on free
ports and a temp data dir), then the README's own `python -m connector …` lines, unchanged but for
`--data-dir`: `tail` shows an item created, an order's result and its shipment posted, each one line;
`status` prints the banner again with the connections. And `make run PORT=…` after a run on another
port leaves no subscription notifying the old port (issue 27, row 3)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.azurite import running_in_group
from devtools.ports import port_is_free
from tests.devrun.launcher import ROOT, Launcher, launcher_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def quick_start_commands() -> list[list[str]]:
    """The `python -m connector …` lines of the README's quick start, in order, without comments."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0].split("More with", 1)[0]
    lines = [line.split("#", 1)[0].strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)
             for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("python -m connector ")]


def connector(words: list[str], data_dir: Path) -> list[str]:
    assert words[:3] == ["python", "-m", "connector"], words
    return [sys.executable, *words[1:], "--data-dir", str(data_dir)]


class Tail:
    """`python -m connector tail` in the background, its output lines collected."""

    def __init__(self, args: list[str]):
        self.lines: list[str] = []
        self.process = subprocess.Popen(args, cwd=ROOT, env=launcher_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def line_with(self, *parts: str) -> str:
        return wait_until(lambda: next((ln for ln in self.lines if all(p in ln for p in parts)), None),
                          timeout=120, what=f"a tail line with {parts}; so far: {self.lines}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=ROOT, env=launcher_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def test_the_readme_quick_start_shows_an_item_an_order_and_its_shipment_each_in_one_tail_line(
        launchers, tmp_path):
    commands = quick_start_commands()
    verbs = [c[3] for c in commands]
    assert verbs[:1] == ["tail"] and {"trigger", "send", "status"} <= set(verbs), commands
    launchers.append(Launcher(tmp_path))
    launchers[0].start()
    tail = Tail(connector(commands[0], tmp_path))
    try:
        wait_until(lambda: any(line.startswith("tailing ") for line in tail.lines), timeout=60,
                   what=f"tail started: {tail.lines}")
        outputs: dict[str, str] = {}
        for words in commands[1:]:
            outputs[" ".join(words[3:])] = run(connector(words, tmp_path)).stdout
        item = tail.line_with("bc.item.created", "number=CLI-")
        result = tail.line_with("order.created", "key=WEB-1", "order=")
        shipment = tail.line_with("bc.salesShipment.created", "externalDocumentNumber=WEB-1")
    finally:
        tail.stop()
    assert item.endswith("(bc-items)") and shipment.endswith("(bc-sales-shipments)"), (item, shipment)
    order_number = re.search(r"order=(\S+)", result).group(1)
    assert f"orderNumber={order_number}" in shipment
    sent = next(out for cmd, out in outputs.items() if cmd.startswith("send"))
    assert '"status": "created"' in sent
    status = next(out for cmd, out in outputs.items() if cmd.startswith("status"))
    assert "bc-connector on http://127.0.0.1:" in status and "functions:" in status
    assert re.search(r"status \s+\[GET\] \S+/api/status \(function\)", status), status
    assert "default: token ok" in status and re.search(r"(\d+)/\1 subscriptions active", status), status


def emulator_subscriptions(launcher: Launcher) -> list[dict[str, Any]]:
    response = requests.get(f"{launcher.emulator_url}/_emulator/bc/subscriptions", verify=launcher.ca_bundle,
                            timeout=30)
    return response.json()["value"]


def test_a_run_on_another_port_moves_the_subscriptions_there(launchers, tmp_path):
    first = Launcher(tmp_path)
    launchers.append(first)
    first.start()
    made = requests.post(f"{first.url}/api/connections/default/subscriptions", timeout=120).json()
    assert len(made["created"]) == 3, made
    azurite = first.azurite_group
    first.stop()
    wait_until(lambda: not running_in_group(azurite) and all(port_is_free(p) for p in first.ports[1:]),
               timeout=60, what="the first run's Azurite and emulator gone, their ports free")

    second = Launcher(tmp_path, emulator_port=first.emulator_port, azurite_port=first.azurite_port)
    launchers.append(second)
    second.start()
    assert second.port != first.port

    def moved() -> list[str] | None:
        urls = [s["notificationUrl"] for s in emulator_subscriptions(second)]
        return urls if len(urls) == 3 and all(u.startswith(f"{second.url}/") for u in urls) else None

    try:
        wait_until(moved, timeout=120, what=f"webhook subscriptions notifying {second.url} only")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; make run said:\n{second.output}") from None

    def current() -> list[dict[str, Any]] | None:  # business events too, once the same run reaches them
        report = requests.get(f"{second.url}/api/status", headers={"Accept": "application/json"},
                              timeout=60).json()
        subs = report["connections"][0]["subscriptions"]
        return subs if all(s.get("url_current") for s in subs) else None

    try:
        subs = wait_until(current, timeout=120, what="every subscription of the status report current")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; make run said:\n{second.output}") from None
    assert {s["status"] for s in subs} == {"active"}, subs
    events = requests.get(f"{second.emulator_url}/_emulator/bc/businessevents/subscriptions",
                          verify=second.ca_bundle, timeout=30)
    assert events.status_code == 200, events.text  # the old URL's business-event subscriptions are gone
    listed = events.json()["value"]
    assert listed and all(s["notificationUrl"].startswith(f"{second.url}/") for s in listed), listed


def test_each_posting_trigger_causes_its_event_once(launchers, tmp_path):
    launchers.append(Launcher(tmp_path))
    launchers[0].start()
    tail = Tail([sys.executable, "-m", "connector", "tail", "--json", "--data-dir", str(tmp_path)])
    try:
        wait_until(lambda: any(line.startswith("tailing ") for line in tail.lines), timeout=60,
                   what=f"tail started: {tail.lines}")
        trigger = [sys.executable, "-m", "connector", "trigger", "--data-dir", str(tmp_path)]
        shipped = run([*trigger, "shipment.posted"])
        invoiced = run([*trigger, "invoice.posted"])
        shipment_number = re.search(r"posted salesShipment (\S+)", shipped.stdout).group(1)
        invoice_number = re.search(r"posted sales invoice (\S+)", invoiced.stdout).group(1)
        tail.line_with('"bc.salesShipment.created"', f'"number": "{shipment_number}"')
        tail.line_with('"bc.salesInvoice.created"', f'"number": "{invoice_number}"')
    finally:
        tail.stop()
    invoices = [ln for ln in tail.lines if '"bc.salesInvoice.created"' in ln]
    assert len(invoices) == 1, invoices  # the draft's webhook and the business event: one event
