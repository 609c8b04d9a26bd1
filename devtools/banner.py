"""What `make run`'s banner says beyond the URLs (dev tooling): every function with its trigger
(route and auth level, as `func start` lists them), and the settings file and overrides in effect."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from connector.settings import SETTINGS

SECRET_HINTS = ("SECRET", "KEY", "PASSWORD", "CONNECTIONSTRING")
MADE_BY_RUN = ("AzureWebJobsStorage", "BC_API_HOST", "ENTRA_AUTHORITY_HOST", "TLS_CA_BUNDLE",
               "REQUESTS_CA_BUNDLE", "PUBLIC_BASE_URL")


def function_lines(specs: Iterable[Any], base_url: str, route_prefix: str = "api",
                   environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per function: `name  [GET,POST] url (auth)`, `name  queue q`, `name  timer %SETTING%`."""
    lines = []
    for spec in sorted(specs, key=lambda s: (s.trigger_type, s.name)):
        trigger = spec.trigger
        kind = spec.trigger_type
        if kind == "httpTrigger":
            methods = ",".join(m.upper() for m in trigger.get("methods") or ["GET", "POST"])
            auth = str(trigger.get("authLevel", "function")).lower()
            what = f"[{methods}] {base_url}/{route_prefix}/{trigger.get('route', spec.name)} ({auth})"
        elif kind == "queueTrigger":
            what = f"queue {trigger.get('queueName')}"
        else:
            schedule = str(trigger.get("schedule"))
            setting = schedule.strip("%") if schedule.startswith("%") else ""
            what = f"timer {schedule}" + (f" = {environ[setting]}" if environ and setting in environ else "")
        lines.append(f"    {spec.name:<30} {what}")
    return lines


def masked(name: str, value: str) -> str:
    """A setting's value as shown: secrets and storage keys hidden."""
    if not value:
        return '""'
    if any(h in name.upper().replace("_", "") for h in SECRET_HINTS) or "AccountKey=" in value:
        return "(set, hidden)" if not value.startswith("UseDevelopmentStorage") else value
    return value if len(value) <= 70 else value[:67] + "..."


def overrides(file_values: Mapping[str, str], before: Mapping[str, str],
              after: Mapping[str, str]) -> dict[str, str]:
    """The settings whose value does not come from the settings file, with where it came from:
    `environment` (set before `make run` started) or `make run` (pointed at what it started)."""
    names = {s.name for s in SETTINGS} | set(file_values) | set(MADE_BY_RUN)
    found = {}
    for name in sorted(names):
        value = after.get(name)
        if value is None or value == file_values.get(name):
            continue
        origin = "environment" if before.get(name) == value else "make run"
        found[name] = f"{masked(name, value)}  ({origin})"
    return found


def settings_lines(settings_file: Path | None, found: Mapping[str, str]) -> list[str]:
    """The banner's settings part: the file, each override, how to change one."""
    lines = [f"  settings:  {settings_file or '(no settings file: the embedded defaults)'}"]
    lines += [f"    {name} = {shown}" for name, shown in found.items()]
    lines.append("    change one: edit local.settings.json (a copy of local.settings.example.json), or "
                 "NAME=value make run (the environment wins over the file)")
    return lines
