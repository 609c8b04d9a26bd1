"""The runtime freezes what exists when it is built (modules, classes, itself) out of the garbage
collector's generations, once per process, so full collections on a busy worker stay short."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_long_lived_objects_are_frozen_once_per_process() -> None:
    script = (
        "import gc\n"
        "from connector.runtime import freeze_long_lived\n"
        "assert gc.get_freeze_count() == 0\n"
        "freeze_long_lived()\n"
        "first = gc.get_freeze_count()\n"
        "assert first > 1000, first\n"
        "junk = [[] for _ in range(5000)]\n"
        "freeze_long_lived()\n"
        "assert gc.get_freeze_count() == first, 'frozen again: later objects must stay collectable'\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
