"""A small v2 Functions app for the local-host tests: a blueprint with HTTP, queue and timer triggers."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import azure.functions as func

bp = func.Blueprint()


class Recorder:
    """What the functions saw, for assertions (thread-safe); tests call `reset()` first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[func.QueueMessage, float]] = []
        self.timers: list[tuple[str, bool]] = []
        self.running = 0
        self.max_running = 0
        self.tick_seconds = 0.0
        self.tick_blocks = False  # `tick` then waits for `release`, as a function that never returns
        self.release = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.timers.clear()
            self.running = self.max_running = 0
            self.tick_seconds = 0.0
            self.tick_blocks = False
            self.release = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


seen = Recorder()


@bp.route(route="items/{id}/{detail?}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def items(req: func.HttpRequest) -> func.HttpResponse:
    echo = {
        "method": req.method,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "header": req.headers.get("x-sample"),
        "url": req.url,
    }
    return func.HttpResponse(json.dumps(echo), mimetype="application/json", headers={"X-Echo": "1"})


@bp.route(route="secure/{name}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def secure(req: func.HttpRequest) -> str:
    return f"hello {req.route_params['name']}"


@bp.route(route="admin/ping", auth_level=func.AuthLevel.ADMIN)
def admin_ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=204)


@bp.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-detail")


@bp.route(route="ctx", auth_level=func.AuthLevel.ANONYMOUS)
async def ctx(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0)
    return func.HttpResponse(f"{context.function_name} {context.invocation_id}", status_code=201)


@bp.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="SampleStorage")
def work(msg: func.QueueMessage) -> None:
    """Body is JSON: `{"fail": true}` raises, `{"sleep": s}` sleeps, `{"block": true}` waits for
    `seen.release` (a function that never returns); anything else succeeds."""
    seen.enter()
    try:
        with seen.lock:
            seen.messages.append((msg, time.monotonic()))
        order = json.loads(msg.get_body() or b"{}")
        time.sleep(order.get("sleep", 0))
        if order.get("block"):
            seen.release.wait()
        if order.get("fail"):
            raise ValueError("asked to fail")
    finally:
        seen.leave()


@bp.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%")
def tick(timer: func.TimerRequest) -> str:
    seen.enter()
    try:
        with seen.lock:
            seen.timers.append(("tick", timer.past_due))
        time.sleep(seen.tick_seconds)
        if seen.tick_blocks:
            seen.release.wait()
    finally:
        seen.leave()
    return "ticked"


@bp.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    with seen.lock:
        seen.timers.append(("on_startup", timer.past_due))


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)
