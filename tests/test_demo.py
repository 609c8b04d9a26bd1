"""`make demo` keeps working: the scripted tour runs on the embedded defaults, exits 0 and prints well
(the command behind each step, a short summary at the end; the app's log lines go to a file, not
into the tour)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_tour_passes_every_step_shows_its_commands_and_ends_on_a_summary():
    run = subprocess.run([sys.executable, "-m", "devtools.demo"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "demo finished: every step did what it should" in run.stdout
    assert "FAIL" not in run.stdout
    for shown in ("bc.item.updated arrived", "bc.item.deleted arrived",
                  "bc-sales-invoices: an event with bcexternaldocno DEMO-WEB-1"):
        assert shown in run.stdout

    # every step shows the command behind it (issue 27, row 8) ...
    assert re.search(r"^   \$ curl -X POST http://127\.0\.0\.1:\d+/api/connections/default/subscriptions$",
                     run.stdout, re.M)
    assert re.search(r"^   \$ curl --cacert \S+ -X POST https://\S+/items -d '", run.stdout, re.M)
    assert "   $ python -m connector send " in run.stdout
    # ... and the tour ends on a short summary: one line per connection, not the status JSON
    status = run.stdout.split("Status\n", 1)[1].split("\ndemo finished", 1)[0].strip().splitlines()
    assert len(status) <= 6, status
    assert any(line.strip().startswith("default: token ok") for line in status), status
    assert any(line.strip().startswith("webshop: token ok") for line in status), status
    assert re.search(r"demo finished: every step did what it should \(\d+ checks passed\)", run.stdout)
    assert run.stderr == ""
    log = (ROOT / ".devdata" / "demo.log").read_text(encoding="utf-8")
    assert "sales order 'DEMO-BAD-1'" in log
