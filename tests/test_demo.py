"""`make demo` keeps working: the scripted tour runs on the embedded defaults and exits 0."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_tour_passes_every_step():
    run = subprocess.run([sys.executable, "-m", "devtools.demo"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "demo finished: every step did what it should" in run.stdout
    assert "FAIL" not in run.stdout
