"""Loopback ports of the dev tools: a free one, whether one is free, and who holds it (dev tooling)."""
from __future__ import annotations

import os
import socket
from pathlib import Path


class PortBusy(RuntimeError):
    """A port the dev tools need is taken; the message names it, its holder if known, and the fix."""

    def __init__(self, port: int, what: str, fix: str) -> None:
        holder = port_holder(port)
        super().__init__(f"port {port} ({what}) is already in use"
                         f"{f' by {holder}' if holder else ''}: {fix}")
        self.port = port


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (racy by nature; good enough for loopback test services)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on `port` of 127.0.0.1 (or of every address)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is no holder
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """`pid N (command line)` of the process listening on `port`, if Linux's /proc tells (own
    processes only); else None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc") if inodes else ()):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                return f"pid {pid} ({cmdline[:120]})"
        except OSError:
            continue
    return None
