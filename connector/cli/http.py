"""Calls to the app's routes and the local emulator's admin API, answering within seconds or
raising CLIError with what to start or check."""
from __future__ import annotations

from typing import Any

import requests

from connector.cli.errors import CLIError
from connector.cli.local_run import LocalRun
from connector.cli.target import REACH_SECONDS, Target

TIMEOUT = (REACH_SECONDS, 60.0)  # (connect, read)


def app_call(target: Target, method: str, route: str, **kw: Any) -> requests.Response:
    """`method /api/<route>` on the app (with the function key, if any)."""
    if not target.host_url:
        raise CLIError("no app URL: give --url https://<app>.azurewebsites.net (or --settings with "
                       "PUBLIC_BASE_URL)")
    headers = dict(kw.pop("headers", None) or {})
    if target.host_key:
        headers["x-functions-key"] = target.host_key
    url = f"{target.host_url}/api/{route}"
    try:
        response = requests.request(method, url, headers=headers, timeout=TIMEOUT, **kw)
    except (requests.ConnectionError, requests.Timeout):
        hint = "start `make run`" if target.local or "127.0.0.1" in url or "localhost" in url else \
            "check the URL and that the app is running"
        raise CLIError(f"the app at {target.host_url} is not answering: {hint}") from None
    if response.status_code == 401:
        raise CLIError(f"the app refused {route} without a valid key (401): give a function key with "
                       "--key or FUNCTION_KEY (az functionapp keys list -g <group> -n <app>)")
    return response


def emulator_call(run: LocalRun, method: str, path: str, body: Any = None) -> Any:
    """`method /_emulator/bc/<path>` on the local emulator; the JSON answer."""
    try:
        response = requests.request(method, f"{run.emulator_url}/_emulator/bc/{path}", json=body,
                                    verify=run.ca_bundle or True, timeout=TIMEOUT)
    except (requests.ConnectionError, requests.Timeout):
        raise CLIError(f"the BC emulator at {run.emulator_url} is not answering: restart `make run`"
                       ) from None
    if response.status_code >= 400:
        try:
            error = response.json().get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except ValueError:
            message = response.text[:200]
        raise CLIError(f"the BC emulator refused {method} {path} ({response.status_code}): {message}")
    return response.json() if response.content else None
