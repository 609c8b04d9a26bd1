"""No child outlives the test run: every process descended from the pytest process (emulators,
hosts, `make run` launchers in sessions of their own) is stopped when the run ends, however it ends
(finished, a test timed out, SIGTERM from `timeout`, SIGINT ignored because `make test` was started
as a background job). Linux /proc only; elsewhere nothing to do."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """Every live process below `root`, nearest first."""
    parents = _parents()
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def reap(root: int | None = None, grace: float = 10.0) -> list[int]:
    """SIGTERM every descendant of `root` (default: this process), SIGKILL what is left after `grace`
    seconds; the pids that had to be stopped."""
    root = os.getpid() if root is None else root
    left = descendants(root)
    for pid in left:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in left):
        time.sleep(0.1)
    for pid in left:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    return left


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        except ChildProcessError:
            pass
        return False
    return True


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """SIGTERM (what `timeout` and CI send) ends the run like Ctrl-C, so fixtures stop what they
    started; a SIGINT that came in ignored is honoured again."""
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
