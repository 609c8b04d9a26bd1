"""An inner test run for tests/harness/test_no_child_outlives_the_suite.py (not collected by the
outer run: the file name does not start with `test_`). It starts what real tests start — Azurite
(the session fixture), an emulator in a session of its own like `make run`'s launcher — records their
pids and then hangs until it times out or the run is stopped from outside."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(int(os.environ.get("INNER_TIMEOUT", "600")))
def test_starts_children_then_hangs(azurite):
    emulator = subprocess.Popen([sys.executable, "-m", "devtools.emulator", "--port", "0", "--seed", "none"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    while not emulator.stdout.readline().startswith("Ctrl-C"):
        pass
    pids = [emulator.pid, azurite.process.pid]
    Path(os.environ["INNER_PIDS"]).write_text(" ".join(map(str, pids)))
    time.sleep(3600)
