"""Docs that stay true (issue 27, row 7): no test counts or durations that go stale, no paths outside
the repository, and the README says how to change a setting for `make run`."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_states_no_test_count_or_suite_duration():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"runs about \d+ tests|\d+\s*-\s*\d+ minutes", text)


def test_no_document_cites_a_path_outside_the_repository():
    outside = re.compile(r"(?<![\w.])/(?:work|home|tmp|opt|shared|root|Users)/[\w./-]+")
    found = {str(p.relative_to(ROOT)): outside.findall(p.read_text(encoding="utf-8")) for p in DOCS}
    assert {name: paths for name, paths in found.items() if paths} == {}


def test_the_readme_says_how_to_change_a_setting_for_make_run():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Changing a setting for `make run`" in text
    assert re.search(r"[A-Z_]+=\S+ make run", text)


def test_make_echoes_none_of_its_commands_for_run_and_the_cli_shortcuts():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "reset", "peek", "replay-poison", "tail", "send", "trigger", "status"):
        recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, target
        assert recipe.group(1).startswith("\t@"), (target, recipe.group(1))


def test_the_deploy_guide_names_every_permission_and_ends_with_a_verification_by_the_cli():
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for permission in ("API.ReadWrite.All", "Financials.ReadWrite.All", "Grant admin consent",
                       "Microsoft Entra Applications", "D365 AUTOMATION", "Ext. Events - Subscr"):
        assert permission in text, permission
    verify = text.split("## 6. Verify the deployment", 1)[1].split("\n## ", 1)[0]
    for command in ("python -m connector doctor --settings", "python -m connector status --url",
                    "python -m connector tail --account", "python -m connector send ", "Live Metrics"):
        assert command in verify, command
    assert "deploy.md#6-verify-the-deployment" in (ROOT / "README.md").read_text(encoding="utf-8")
