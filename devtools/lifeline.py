"""Run a command that dies with its parent: ``python devtools/lifeline.py <parent pid> <command...>``.

Sets Linux's PR_SET_PDEATHSIG (SIGTERM) and then execs the command, so a child started through it
gets SIGTERM when the process that started it ends — also by SIGKILL, when no cleanup code runs.
(Setting it from a `preexec_fn` instead is unsafe with threads running.) The signal comes when the
*thread* that started the child ends, so start children from a thread that lives as long as they do.
Elsewhere than Linux it only execs. Standard library only: it runs before anything is imported.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def command(argv: list[str]) -> list[str]:
    """`argv` wrapped so that it dies with this process."""
    return [sys.executable, os.path.abspath(__file__), str(os.getpid()), *argv]


def main(argv: list[str]) -> None:
    """Arm the parent-death signal, check the parent is still there, exec the command."""
    parent, cmd = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(1)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
