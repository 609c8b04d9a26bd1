"""The package's shape, read from its source with ast: no import cycles inside `connector/` (every
import counts: module level, inside functions, under TYPE_CHECKING), and no module-level pools, caches
or locks (they belong to objects the runtime owns and tests can replace); feature modules reach the
runtime only through their blueprint (the runtime builds each folder's service from its collaborators);
no module but `connector/retry.py` grows its own back-off; devtools has no import cycles either."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "connector"

# Process-wide by nature, nothing else: the runtime root (the Functions host gives the blueprints no
# object of ours to hold it), and telemetry, whose instruments and gauge callbacks register on
# OpenTelemetry's process-global providers (set once per process by the API's design).
ALLOWED_GLOBALS = {
    ("connector.runtime", "_runtime"), ("connector.runtime", "_runtime_lock"),
    ("connector.telemetry", "_telemetry"), ("connector.telemetry", "_configured"),
    ("connector.telemetry", "_setup_lock"),
}

# Calls that build shared mutable state: locks, pools, caches, weak maps, mutable containers.
STATEFUL_CALLS = {
    "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier",
    "ThreadPoolExecutor", "ProcessPoolExecutor", "Pool", "Queue", "SimpleQueue", "LifoQueue",
    "PriorityQueue", "WeakKeyDictionary", "WeakValueDictionary", "WeakSet", "dict", "list", "set",
    "defaultdict", "OrderedDict", "Counter", "deque", "ChainMap", "local", "Session", "Client",
}
CACHE_DECORATORS = {"cache", "lru_cache", "cached"}

# Feature folders: their blueprint reaches the runtime (`get_runtime().<service>`); no other module in
# them imports `connector.runtime` (the runtime hands each service its collaborators).
FEATURE_FOLDERS = ("auth", "businessevents", "fanout", "health", "items", "ops", "orders", "webhooks")
# Modules not yet turned into a service's collaborators (none left; the list only shrinks).
STILL_TAKING_THE_RUNTIME: set[str] = set()
# The one retry policy (Retry-After, else capped exponential back-off with jitter).
RETRY_MODULE = "connector.retry"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source (`from pkg import module`
    names the module; relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name and not known_package_only(m, known)}


def known_package_only(module: str, known: set[str]) -> bool:
    """A package `__init__` with no imports of its own cannot close a cycle; skipping it keeps
    `from connector.webhooks import sweep` an edge to `sweep` only."""
    return any(k.startswith(module + ".") for k in known)


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(root, package)
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _call_name(node: ast.expr) -> str:
    func = node.func if isinstance(node, ast.Call) else node
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _shared_state(value: ast.expr | None, stateful: set[str] = STATEFUL_CALLS) -> bool:
    """A value that is mutable shared state when bound at module (or class) level."""
    if value is None:
        return False
    if isinstance(value, (ast.Dict, ast.List, ast.Set)) and not (
            getattr(value, "keys", None) or getattr(value, "elts", None)):
        return True  # an empty container waiting to be filled at run time
    return isinstance(value, ast.Call) and _call_name(value) in stateful


def stateful_classes(paths: list[Path]) -> set[str]:
    """Classes whose instances hold pools, caches or locks (`self.x = ...` in a method, or a
    dataclass field whose default_factory builds one): a module-level instance of one is a global."""
    found = set()
    for path in paths:
        for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                on_self = isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self" for t in node.targets)
                if (on_self and _shared_state(node.value)) or (
                        isinstance(node, ast.keyword) and node.arg == "default_factory"
                        and _call_name(node.value) in STATEFUL_CALLS):
                    found.add(cls.name)
    return found


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run at import (inside if/try/with too), not in functions."""
    for stmt in body:
        yield stmt
        for field in ("body", "orelse", "finalbody", "handlers"):
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from _top_level(getattr(stmt, field, []) or [])


def global_state(name: str, path: Path, stateful: set[str] = STATEFUL_CALLS) -> list[str]:
    """Module-level pools, caches and locks of a module (and class attributes holding them; a
    class attribute is shared by every instance), as `module:line name`."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scopes = [(tree.body, "")]
    scopes += [(node.body, f"{node.name}.") for node in _top_level(tree.body)
               if isinstance(node, ast.ClassDef)]
    for body, prefix in scopes:
        for stmt in _top_level(body):
            targets: list[ast.expr] = []
            value = None
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign):
                targets, value = [stmt.target], stmt.value
            for target in targets:
                label = prefix + (target.id if isinstance(target, ast.Name) else ast.unparse(target))
                if _shared_state(value, stateful) and (name, label) not in ALLOWED_GLOBALS:
                    found.append(f"{name}:{stmt.lineno} {label}")
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                cached = [d for d in stmt.decorator_list if _call_name(d) in CACHE_DECORATORS]
                if cached:
                    found.append(f"{name}:{stmt.lineno} @{_call_name(cached[0])} {prefix}{stmt.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found += [f"{name}:{node.lineno} global {n}" for n in node.names
                      if (name, n) not in ALLOWED_GLOBALS]
    return found


# ---- the connector package ----------------------------------------------------------------------

def test_connector_has_no_import_cycles() -> None:
    graph = import_graph(ROOT)
    assert "connector.runtime" in graph and graph["connector.webhooks.blueprint"] >= {
        "connector.webhooks.receiver", "connector.webhooks.service", "connector.runtime"}
    assert find_cycles(graph) == []


def test_connector_defines_no_module_level_pools_caches_or_locks() -> None:
    modules = package_modules(ROOT)
    stateful = STATEFUL_CALLS | stateful_classes(list(modules.values()))
    assert {"Runtime", "SubscriptionDirectory", "ItemVariants", "Companies", "TokenService"} <= stateful
    offenders = [hit for name, path in modules.items() for hit in global_state(name, path, stateful)]
    assert offenders == []


def takes_the_runtime(root: Path, package: str = PACKAGE) -> set[str]:
    """Feature modules other than blueprints that import `connector.runtime` (any import counts)."""
    runtime = f"{package}.runtime"
    return {name for name, imports in import_graph(root, package).items()
            if name.count(".") >= 2 and name.split(".")[1] in FEATURE_FOLDERS
            and not name.endswith(".blueprint") and runtime in imports}


def _grows(node: ast.AST) -> bool:
    """`2 ** n`, `x * 2` or `x *= 2`: a delay that doubles."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return isinstance(node.left, ast.Constant) and node.left.value == 2
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return any(isinstance(side, ast.Constant) and side.value == 2 for side in (node.left, node.right))
    return isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult) and (
        isinstance(node.value, ast.Constant) and node.value.value == 2)


def back_off_loops(name: str, path: Path) -> list[str]:
    """Loops that sleep and double a delay: a back-off of their own (`module:line`)."""
    found = []
    for loop in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(loop, ast.While | ast.For):
            continue
        nodes = list(ast.walk(loop))
        sleeps = any(isinstance(n, ast.Call) and _call_name(n) == "sleep" for n in nodes)
        if sleeps and any(_grows(n) for n in nodes):
            found.append(f"{name}:{loop.lineno}")
    return found


# ---- the checks themselves fail where they should -----------------------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "feature/__init__.py": "",
        "runtime.py": "def tokens():\n    from connector.feature import signin\n    return signin\n",
        "feature/signin.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from ..runtime import Runtime\n",
        "feature/pages.py": "from connector.feature.signin import x\n",
    })
    assert find_cycles(import_graph(root)) == [["connector.feature.signin", "connector.runtime"]]


def test_module_level_pools_caches_locks_and_globals_are_found(tmp_path: Path) -> None:
    root = _package(tmp_path, {"__init__.py": "", "state.py": (
        "import functools, threading, weakref\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "LIMITS = {'a': 1}\n"
        "_pool = ThreadPoolExecutor(max_workers=4)\n"
        "_lock = threading.Lock()\n"
        "_cache: dict[str, int] = {}\n"
        "_seen = weakref.WeakKeyDictionary()\n"
        "class Holder:\n"
        "    shared = []\n"
        "    def __init__(self):\n"
        "        self.own = {}\n"
        "HOLDER = Holder()\n"
        "@functools.cache\n"
        "def host_value():\n"
        "    return 1\n"
        "def remember():\n"
        "    global _cache\n"
        "    _cache = {}\n"
    )})
    path = root / PACKAGE / "state.py"
    found = global_state("connector.state", path, STATEFUL_CALLS | stateful_classes([path]))
    assert [hit.split(" ", 1)[1] for hit in found] == [
        "_pool", "_lock", "_cache", "_seen", "HOLDER", "@cache host_value", "Holder.shared", "global _cache"]


def test_a_feature_module_taking_the_runtime_and_a_back_off_loop_are_found(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "", "runtime.py": "", "items/__init__.py": "",
        "items/blueprint.py": "from connector.runtime import get_runtime\n",
        "items/pull.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from connector.runtime import Runtime\n",
        "items/service.py": "import time\ndef call(send):\n    pause = 0.1\n    while not send():\n"
                            "        time.sleep(pause)\n        pause = min(pause * 2, 1.0)\n",
    })
    assert takes_the_runtime(root) == {"connector.items.pull"}
    service = root / PACKAGE / "items" / "service.py"
    assert back_off_loops("connector.items.service", service) == ["connector.items.service:4"]


# ---- services, retries, devtools ------------------------------------------------------------------

def test_feature_modules_reach_the_runtime_only_through_their_blueprint() -> None:
    taking = takes_the_runtime(ROOT)
    assert taking - STILL_TAKING_THE_RUNTIME == set(), "take collaborators in a service's constructor"
    done = STILL_TAKING_THE_RUNTIME - taking
    assert not done, f"no longer take the runtime (remove them from STILL_TAKING_THE_RUNTIME): {done}"


def test_no_module_grows_a_back_off_of_its_own() -> None:
    loops = [hit for name, path in package_modules(ROOT).items() if name != RETRY_MODULE
             for hit in back_off_loops(name, path)]
    assert loops == [], "wait with connector.retry.RetryPolicy"


def test_devtools_has_no_import_cycles() -> None:
    graph = import_graph(ROOT, "devtools")
    assert "devtools.emulator.server" in graph
    assert find_cycles(graph) == []
