"""`make demo` keeps working: the scripted tour runs on the embedded defaults, exits 0 and prints well
(whole, indented JSON; the app's log lines go to a file, not into the tour)."""
import json
import re
import subprocess
import sys
import textwrap
from itertools import takewhile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def indented_json_after(heading: str, stdout: str) -> object:
    """The indented JSON block printed right after the line `heading` (a regular expression)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(heading, line))
    block = takewhile(lambda line: line.startswith("   "), lines[start + 1:])
    return json.loads(textwrap.dedent("\n".join(block)))


@pytest.mark.slow
def test_the_demo_tour_passes_every_step_and_prints_whole_indented_output():
    run = subprocess.run([sys.executable, "-m", "devtools.demo"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "demo finished: every step did what it should" in run.stdout
    assert "FAIL" not in run.stdout
    for shown in ("bc.item.updated arrived", "bc.item.deleted arrived",
                  "bc-sales-invoices: an event with bcexternaldocno DEMO-WEB-1"):
        assert shown in run.stdout

    status = indented_json_after(r"\d+\. Status", run.stdout)
    assert [c["name"] for c in status["connections"]] == ["default", "webshop"]
    assert run.stderr == ""
    log = (ROOT / ".devdata" / "demo.log").read_text(encoding="utf-8")
    assert "sales order 'DEMO-BAD-1'" in log
