"""The shape the contract and the house style promise: thin wiring, tooling kept out of the package."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONTRACT_ROUTES = {
    ("health", ("GET",), "ANONYMOUS"),
    ("status", ("GET",), "FUNCTION"),
    # ADMIN, not the contract's FUNCTION (issue 11 point 7): signing in re-binds the connection
    ("connections/{connection}/login", ("GET",), "ADMIN"),
    ("auth/callback", ("GET", "POST"), "ANONYMOUS"),  # POST: Entra's form_post (issue 11 point 6)
    ("webhooks/bc", ("GET", "POST"), "ANONYMOUS"),
    ("connections/{connection}/subscriptions", ("POST",), "FUNCTION"),
    ("connections/{connection}/subscriptions", ("DELETE",), "ADMIN"),
    ("connections/{connection}/pulls/items", ("POST",), "FUNCTION"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_connector_package_never_imports_dev_tooling():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "connector").rglob("*.py")
                 if any(n.split(".")[0] in ("devtools", "tests", "bench") for n in _imports(p))]
    assert offenders == []


def test_packages_only_dev_tooling_imports_are_not_deployed():
    deployed = {line.split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    imported = {n.split(".")[0] for p in (ROOT / "connector").rglob("*.py") for n in _imports(p)}
    assert "croniter" not in imported and "croniter" not in deployed


def test_dev_tooling_and_tests_are_not_deployed():
    ignored = set((ROOT / ".funcignore").read_text().split())
    assert {"devtools", "tests", "bench", "infra", "local.settings.json", ".venv", "node_modules"} <= ignored
    assert "connector" not in ignored and "function_app.py" not in ignored and "host.json" not in ignored


def test_function_app_only_wires_blueprints():
    tree = ast.parse((ROOT / "function_app.py").read_text())
    for node in tree.body:
        assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)), \
            "function_app.py must not define functions or classes"



def test_next_links_are_followed_in_the_one_pager_only():
    followers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "connector").rglob("*.py")
                       if "nextLink" in p.read_text(encoding="utf-8"))
    assert followers == ["connector/bc/pager.py"]


def _map_sections() -> dict[str, str]:
    """docs/architecture.md's `connector/` map: each `### ` section's text by the folder its title
    names in backticks (`bc/`, ...; the shared plumbing: `connector/*.py`)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    sections = {}
    for part in text.split("\n### ")[1:]:
        title, _, body = part.partition("\n")
        folder = title.split("`")[1] if "`" in title else title
        sections[folder] = body.split("\n## ", 1)[0]
    return sections


def test_the_architecture_map_names_every_connector_module_in_its_folder():
    sections = _map_sections()
    missing = []
    for path in sorted((ROOT / "connector").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        folder = "connector/*.py" if path.parent.name == "connector" else f"{path.parent.name}/"
        if f"`{path.name}`" not in sections.get(folder, ""):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []

@pytest.fixture(scope="module")
def functions():
    import function_app

    app = function_app.app
    app.functions_bindings = {}  # get_functions() validates names once per call
    return {f.get_function_name(): f for f in app.get_functions()}


def test_every_contract_route_is_served_with_its_auth_level(functions):
    import json

    served = set()
    for f in functions.values():
        binding = json.loads(f.get_function_json())["bindings"][0]
        if binding["type"] == "httpTrigger":
            served.add((binding["route"], tuple(sorted(m.upper() for m in binding["methods"])),
                        binding["authLevel"]))
    assert served >= CONTRACT_ROUTES


def test_queue_triggers_listen_on_the_contract_queues(functions):
    import json

    queues = set()
    for f in functions.values():
        binding = json.loads(f.get_function_json())["bindings"][0]
        if binding["type"] == "queueTrigger":
            queues.add(binding["queueName"])
            assert binding["connection"] == "AzureWebJobsStorage"
    assert {"sales-orders", "bc-notifications"} <= queues


def test_timer_schedules_come_from_settings(functions):
    import json

    schedules = {json.loads(f.get_function_json())["bindings"][0].get("schedule")
                 for f in functions.values()}
    assert {"%ITEM_PULL_SCHEDULE%", "%SUBSCRIPTION_RENEWAL_SCHEDULE%", "%SWEEP_SCHEDULE%"} <= schedules
