"""No child outlives the suite, whatever ends it (issue 27, row 6): an inner pytest run, started the
way a non-interactive shell starts a background `make test` (SIGINT ignored), starts Azurite and an
emulator in a session of its own, then a test times out — or `timeout` sends SIGTERM to the run.
Afterwards nothing it started is running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reaper import descendants
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
INNER = Path(__file__).with_name("inner_suite.py")

pytestmark = [pytest.mark.slow]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a background job of a non-interactive shell


def running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.parametrize("ending", ["a test times out", "SIGTERM to the run", "SIGINT, then SIGTERM"])
def test_nothing_the_run_started_is_left_running(tmp_path, ending):
    pids_file = tmp_path / "pids"
    timeout = "20" if ending == "a test times out" else "600"
    env = dict(os.environ, INNER_PIDS=str(pids_file), INNER_TIMEOUT=timeout)
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(INNER)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=_ignore_sigint, start_new_session=True)
    try:
        wait_until(lambda: pids_file.exists() and pids_file.read_text(), timeout=180,
                   what="the inner run's children started")
        pids = [int(p) for p in pids_file.read_text().split()]
        below = descendants(inner.pid)
        assert set(pids) <= set(below), (pids, below)
        if ending != "a test times out":
            if ending.startswith("SIGINT"):
                os.killpg(inner.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
            os.killpg(inner.pid, signal.SIGTERM)  # what `timeout` does to its command's group
        output, _ = inner.communicate(timeout=240)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
    assert inner.returncode != 0, output
    left = wait_until(lambda: not running(below + pids) or None, timeout=60,
                      what=f"nothing left of {below + pids}; output:\n{output}")
    assert left
