"""`python -m devtools.localhost`: serve a Functions app like `func start` (dev tooling, not deployed).

Loads `local.settings.json` (or `local.settings.example.json`) `Values` into the environment without
overriding variables already set, imports the app module, and serves until Ctrl-C / SIGTERM. Running
invocations then get 30 s to finish; if one is still running, its name is logged and the exit code is 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from .cli import configure_logging, load_settings, settings_file, stop_signal
from .host import LocalHost
from .queues import DEFAULT_LEASE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m devtools.localhost", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="0 = a free port")
    parser.add_argument("--app", default="function_app", help="module holding `app` (module or module:attr)")
    parser.add_argument("--settings", type=Path, help="default: local.settings.json, else the example")
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    parser.add_argument("--queue-lease", type=int, default=DEFAULT_LEASE,
                        help="seconds a running message stays invisible before its lease is renewed "
                             "(also how soon another instance retries it after this one dies)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve the app until SIGINT/SIGTERM."""
    args = parse_args(argv)
    configure_logging()
    stop = stop_signal()
    settings = settings_file(Path.cwd(), args.settings)
    if settings is not None:
        load_settings(settings)
    sys.path.insert(0, str(Path.cwd()))
    module_name, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attr or "app")
    host = LocalHost(app, host_json=args.host_json, port=args.port,
                     queue_lease=args.queue_lease).start()
    try:
        print(f"Local Functions host on {host.url} (settings: {settings or 'none'})")
        for spec in host.functions:
            print(f"  {spec.name}: {spec.trigger_type} {spec.trigger.get('route') or ''}".rstrip())
        print("Ctrl-C to stop.", flush=True)
        stop.wait()
    finally:
        if host.stop():  # logged; a queue worker still in a function would keep the process from ending
            logging.shutdown()
            sys.stdout.flush()
            os._exit(1)


if __name__ == "__main__":
    main()
