"""Expected failures of `python -m connector …` are one line naming what to start or check, and come
at once: storage or the app not answering, a missing or broken settings file, an invalid order, no
`make run` for `trigger` (issue 27, row 5). Each runs the real CLI in a subprocess; the generous
subprocess timeout only catches a hang (before: 87 s of silent retries, then an 81-line traceback)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ORDER = ROOT / "docs" / "examples" / "sales-order.json"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, input=stdin)


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


@pytest.fixture
def storage_down(tmp_path: Path) -> Path:
    """A settings file whose storage is a loopback port nothing listens on."""
    port = free_port()
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    path = tmp_path / "down.settings.json"
    path.write_text(json.dumps({"Values": {"AzureWebJobsStorage": conn,
                                           "PUBLIC_BASE_URL": f"http://127.0.0.1:{free_port()}"}}))
    return path


@pytest.mark.parametrize("command", [
    ("peek", "sales-order-results"), ("replay-poison", "sales-orders"), ("tail",), ("send", str(ORDER)),
])
def test_storage_down_is_one_line_naming_what_to_start(storage_down, command):
    line = one_line_error(cli(*command, "--settings", str(storage_down)))
    assert "is not answering" in line and "make run" in line, line


@pytest.mark.parametrize("command", [("peek", "sales-orders"), ("tail",), ("status",), ("send", str(ORDER))])
def test_a_missing_settings_file_is_one_line(command, tmp_path):
    line = one_line_error(cli(*command, "--settings", str(tmp_path / "nonexistent.json")))
    assert "nonexistent.json not found" in line


def test_a_settings_file_that_is_not_json_is_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "is not valid JSON" in one_line_error(cli("tail", "--settings", str(broken)))


def test_the_app_down_is_one_line(storage_down):
    line = one_line_error(cli("status", "--settings", str(storage_down)))
    assert "is not answering" in line and "make run" in line


def test_an_invalid_order_is_refused_before_it_is_queued_naming_every_problem(storage_down):
    order = {"customerNumber": "GL00000008", "salesOrderLines": [{"itemNumber": "1896-S", "quantity": "two"}],
             "number": "S-1"}
    line = one_line_error(cli("send", "-", "--settings", str(storage_down), stdin=json.dumps(order)))
    assert "not sent" in line and "quantity" in line and "number: read-only field" in line, line


def test_an_order_file_that_is_not_there_is_one_line(storage_down, tmp_path):
    line = one_line_error(cli("send", str(tmp_path / "order.json"), "--settings", str(storage_down)))
    assert "no such file" in line


def test_trigger_without_make_run_says_to_start_it(tmp_path):
    line = one_line_error(cli("trigger", "item.created", "--data-dir", str(tmp_path)))
    assert "start `make run`" in line
