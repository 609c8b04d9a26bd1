"""Run a command that dies with its parent: ``python devtools/lifeline.py <parent pid> <command...>``.

A small supervisor between the parent and the command. It arms Linux's PR_SET_PDEATHSIG (SIGTERM)
for itself, so the parent's end — even by SIGKILL, when no cleanup code runs — reaches it, and hands
the command exactly one SIGTERM however many signals come. (The kernel sends the parent-death signal
again each time the child is handed to another thread of a dying multi-threaded parent; Azurite
takes the first TERM to save and close, and a second one kills it before it has saved.) SIGINT and
SIGHUP are forwarded the same way, each with a SIGCONT (a stopped command acts on its TERM only once
it runs again), and a command still there KILL_AFTER seconds later is killed: a hung or frozen
command never outlives its parent for long. Its exit status is the command's. Elsewhere than Linux there is
no parent-death signal. Standard library only: it runs before anything is imported.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
KILL_AFTER = 30.0  # seconds between the forwarded TERM and a KILL (Azurite saves and closes in far less)


def command(argv: list[str]) -> list[str]:
    """`argv` wrapped so that it dies with this process (start it in a new session: the supervisor
    then leads its process group, and killing the group kills both)."""
    return [sys.executable, os.path.abspath(__file__), str(os.getpid()), *argv]


def main(argv: list[str]) -> int:
    """Arm the parent-death signal, start the command, hand it one SIGTERM after the first signal."""
    parent, cmd = int(argv[0]), argv[1:]
    stopping: list[int] = []  # signals received; only this loop acts on them, so TERM goes once

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent or stopping:  # the parent died, or asked to stop, before this point
        return 1
    child = subprocess.Popen(cmd)
    sent_at = 0.0
    while child.poll() is None:
        if stopping and not sent_at:
            child.send_signal(signal.SIGTERM)
            child.send_signal(signal.SIGCONT)
            sent_at = time.monotonic()
        elif sent_at and time.monotonic() - sent_at > KILL_AFTER:
            child.kill()
        time.sleep(0.1)
    return child.returncode

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
