"""Where a command points: storage, the app's URL and (locally) the emulator.

In order: `--settings FILE` (a `local.settings.json`-style file; for Azure, a file with
`AzureWebJobsStorage__accountName` signs in with `DefaultAzureCredential`, i.e. `az login`), else
`--account NAME` (an Azure storage account, Entra sign-in), else the `make run` going on this
checkout (its run file), else the app settings in the environment. Storage is checked to answer
within a few seconds before a command starts, so nothing waits on the SDK's retries.
"""
from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from connector.cli.errors import CLIError
from connector.cli.local_run import LocalRun, read_run, run_file
from connector.settings import StorageSettings, environment_value, load_storage_settings
from connector.storage import Storage

REACH_SECONDS = 3.0  # how long storage or the app may take to accept a connection
CLIENT_OPTIONS = {"retry_total": 1, "connection_timeout": REACH_SECONDS, "read_timeout": 30}
LOCAL_URL = "http://127.0.0.1:7071"


@dataclass(frozen=True)
class Target:
    """What a command talks to, and where that came from (shown in messages)."""

    source: str
    storage_settings: StorageSettings
    host_url: str
    values: Mapping[str, str] = field(default_factory=dict)
    run: LocalRun | None = None
    host_key: str = ""

    @property
    def local(self) -> bool:
        return self.run is not None

    def storage(self) -> Storage:
        """Storage clients that fail fast (after checking storage accepts connections)."""
        check_reachable(queue_endpoint(self.storage_settings), f"storage ({self.source})")
        return Storage(self.storage_settings, client_options=CLIENT_OPTIONS)

    def where(self) -> str:
        return f"storage ({self.source})"


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, default=None,
                        help="app settings from this local.settings.json-style file (Azure's too)")
    parser.add_argument("--account", default=None, metavar="NAME",
                        help="an Azure storage account, reached as you (`az login`, DefaultAzureCredential)")
    parser.add_argument("--url", default=None, help="the app's base URL (default: the run's, or "
                        "PUBLIC_BASE_URL of the settings)")
    parser.add_argument("--key", default=None, help="a function key for the app's function-level routes "
                        "(default: FUNCTION_KEY in the environment)")
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)


def settings_values(path: Path) -> dict[str, str]:
    """The `Values` of a settings file, or CLIError naming what is wrong with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"settings file {path} not found (copy local.settings.example.json, or name "
                       "another with --settings)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"settings file {path} cannot be read: {exc}") from None
    except ValueError as exc:
        raise CLIError(f"settings file {path} is not valid JSON: {exc}") from None
    values = raw.get("Values") if isinstance(raw, dict) else None
    if not isinstance(values, dict):
        raise CLIError(f"settings file {path} has no \"Values\" object (the local.settings.json shape)")
    return {key: str(value) for key, value in values.items()}


def resolve(args: argparse.Namespace) -> Target:
    """The target the options name (see the module docstring)."""
    key = getattr(args, "key", None) or environment_value("FUNCTION_KEY")
    url = getattr(args, "url", None)
    if getattr(args, "settings", None) is not None:
        values = settings_values(args.settings)
        return Target(f"settings file {args.settings}", load_storage_settings(values),
                      (url or values.get("PUBLIC_BASE_URL") or LOCAL_URL).rstrip("/"), values, host_key=key)
    if getattr(args, "account", None):
        values = {"AzureWebJobsStorage__accountName": args.account}
        return Target(f"account {args.account}, signed in as you", load_storage_settings(values),
                      (url or "").rstrip("/"), values, host_key=key)
    run = read_run(getattr(args, "data_dir", None))
    if run is not None and run.alive():
        values = {"AzureWebJobsStorage": run.storage}
        return Target(f"make run, pid {run.pid}", load_storage_settings(values),
                      (url or run.host_url).rstrip("/"), values, run=run, host_key=key)
    source = "environment"
    if run is not None:
        source = f"environment; the `make run` in {run_file(getattr(args, 'data_dir', None))} is gone"
    return Target(source, load_storage_settings(),
                  (url or environment_value("PUBLIC_BASE_URL") or LOCAL_URL).rstrip("/"), host_key=key)


def require_local(target: Target, what: str) -> LocalRun:
    """The local run, or CLIError: `what` needs the emulator of `make run`."""
    if target.run is None or not target.run.emulator_url:
        raise CLIError(f"{what} changes the local BC emulator, and no `make run` with the emulator is going "
                       f"on this checkout: start `make run` (in real BC, make the change there)")
    return target.run


def queue_endpoint(settings: StorageSettings) -> tuple[str, int]:
    """(host, port) of the queue service the settings name."""
    conn = settings.connection_string
    if conn:
        parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            return "127.0.0.1", 10001
        if parts.get("QueueEndpoint"):
            return _host_port(parts["QueueEndpoint"])
        account = parts.get("AccountName", "")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        secure = parts.get("DefaultEndpointsProtocol", "https") == "https"
        return f"{account}.queue.{suffix}", 443 if secure else 80
    if settings.service_uris.get("queue"):
        return _host_port(settings.service_uris["queue"])
    if settings.account:
        return f"{settings.account}.queue.core.windows.net", 443
    raise CLIError("no storage configured: name it with --settings FILE or --account NAME, or start "
                   "`make run`")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def check_reachable(endpoint: tuple[str, int], what: str, timeout: float = REACH_SECONDS) -> None:
    """CLIError unless something accepts a TCP connection at `endpoint` within `timeout`."""
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror:
        raise CLIError(f"{what}: {host} is not a known host name: check the account name or URL") from None
    except OSError as exc:
        reason = "nothing listens there" if isinstance(exc, ConnectionRefusedError) else \
            (f"no answer in {timeout:.0f} s" if isinstance(exc, TimeoutError) else str(exc))
        hint = "start `make run` (or Azurite)" if host in ("127.0.0.1", "localhost", "::1") else \
            "check the network and the account name"
        raise CLIError(f"{what} at {host}:{port} is not answering ({reason}): {hint}") from None
