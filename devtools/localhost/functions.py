"""Index a v2 `FunctionApp` and invoke its functions like the Python worker (dev tooling, not deployed)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions.decorators.function_app import Function

from .config import ConfigError

log = logging.getLogger("devtools.localhost")

TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")
_INDEXED: weakref.WeakKeyDictionary[func.FunctionApp, list[FunctionSpec]] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its name, trigger binding (as in function.json) and Python callable."""

    name: str
    trigger: dict[str, Any]
    callable: Callable[..., Any]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


@dataclass(frozen=True)
class Invocation:
    """One finished invocation, for tests: outcome is `succeeded` or `failed`; duration in seconds."""

    function: str
    trigger: str
    outcome: str
    duration: float
    error: str | None


def index(app: func.FunctionApp) -> list[FunctionSpec]:
    """The app's functions; `get_functions()` runs once per app object (it cannot run twice)."""
    with _INDEX_LOCK:
        if app not in _INDEXED:
            # get_functions() refuses names it has seen before; forget an earlier caller's indexing.
            app.functions_bindings = {}
            _INDEXED[app] = [_spec(f) for f in app.get_functions()]
        return _INDEXED[app]


def _spec(function: Function) -> FunctionSpec:
    name = function.get_function_name()
    if not name:
        raise ConfigError(f"function {function.get_user_function()!r} has no name")
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
    triggers = [b for b in bindings if b["type"].endswith("Trigger")]
    if len(triggers) != 1 or triggers[0]["type"] not in TRIGGERS:
        kinds = ", ".join(b["type"] for b in triggers) or "none"
        raise ConfigError(f"function {name!r}: trigger {kinds} is not supported (only {', '.join(TRIGGERS)})")
    trigger = triggers[0]
    for binding in bindings:
        is_http_return = binding["type"] == "http" and trigger["type"] == "httpTrigger"
        if binding is not trigger and not is_http_return:
            raise ConfigError(f"function {name!r}: {binding['type']} bindings are not supported")
    return FunctionSpec(name=name, trigger=trigger, callable=function.get_user_function())


class _Context(func.Context):
    """The minimal invocation context the worker passes to a `context` parameter."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class Invoker:
    """Calls functions (awaiting `async def`), logs one line each, and keeps the invocation log.

    `threads` models the Python worker's thread pool (PYTHON_THREADPOOL_THREAD_COUNT): at most that many
    sync invocations run at once, the others wait for a turn; coroutines are not counted (the worker
    runs them on its event loop). None: no limit."""

    def __init__(self, function_directory: str, threads: int | None = None) -> None:
        self._function_directory = function_directory
        self._threads: contextlib.AbstractContextManager[Any] = (
            threading.BoundedSemaphore(threads) if threads else contextlib.nullcontext())
        self._lock = threading.Condition()
        self._active = 0
        self._log: list[Invocation] = []

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    @property
    def invocations(self) -> list[Invocation]:
        with self._lock:
            return list(self._log)

    def invoke(self, spec: FunctionSpec, bind: Callable[[], Any]) -> Any:
        """Run `spec` with the trigger argument `bind()` builds (and `context`); return or raise.

        A failing `bind()` is a failed invocation, as a binding error is in the host.
        """
        with self._lock:
            self._active += 1
        started = time.monotonic()
        error: BaseException | None = None
        try:
            return self._call(spec, bind())
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(spec, started, error)

    def _call(self, spec: FunctionSpec, trigger_input: Any) -> Any:
        kwargs = {spec.trigger["name"]: trigger_input}
        if "context" in inspect.signature(spec.callable).parameters:
            kwargs["context"] = _Context(spec.name, self._function_directory)
        turn = contextlib.nullcontext() if inspect.iscoroutinefunction(spec.callable) else self._threads
        with turn:
            result = spec.callable(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result

    def _finish(self, spec: FunctionSpec, started: float, error: BaseException | None) -> None:
        duration = time.monotonic() - started
        outcome = "failed" if error else "succeeded"
        record = Invocation(spec.name, spec.trigger_type, outcome, duration, _describe(error))
        if error and expected(error):  # the app already logged its reason and fix: one line here too
            log.warning("%s (%s) %s in %.0f ms: %s", spec.name, spec.trigger_type, outcome, duration * 1000,
                        record.error)
        elif error:
            log.error(
                "%s (%s) %s in %.0f ms: %s",
                spec.name,
                spec.trigger_type,
                outcome,
                duration * 1000,
                record.error,
                exc_info=error,
            )
        else:
            log.info("%s (%s) %s in %.0f ms", spec.name, spec.trigger_type, outcome, duration * 1000)
        with self._lock:
            self._log.append(record)
            self._active -= 1
            self._lock.notify_all()


async def _await(awaitable: Any) -> Any:
    return await awaitable


def expected(error: BaseException) -> bool:
    """An error the app raised on purpose, saying what it is (the connector's errors carry a stable
    `error_code`), or storage not answering for a moment (the host retries the message): logged in
    one line. Anything else is unexpected and keeps its stack trace."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    transient = isinstance(error, ServiceRequestError | ServiceResponseError)  # storage briefly down
    return transient or isinstance(getattr(error, "error_code", None), str)


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"
