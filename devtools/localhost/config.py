"""host.json options and app-setting resolution for the local Functions host (dev tooling, not deployed)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("devtools.localhost")

WORKER_THREADS = "PYTHON_THREADPOOL_THREAD_COUNT"  # the Python worker's own app setting
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_SETTING = re.compile(r"%([^%]+)%")


class ConfigError(ValueError):
    """host.json, a binding or an app setting cannot be used as given."""


def parse_timespan(value: str) -> float:
    """Seconds in a .NET TimeSpan string: `hh:mm:ss`, `d.hh:mm:ss`, optional fractional seconds."""
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise ConfigError(f"not a TimeSpan (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def resolve_settings(value: str, env: Mapping[str, str], what: str) -> str:
    """Replace every `%NAME%` in a binding value with the app setting NAME, like the host does."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{what}: app setting {name!r} (from {value!r}) is not set")
        return env[name]

    return _SETTING.sub(lookup, value)


def worker_threads(env: Mapping[str, str]) -> int | None:
    """PYTHON_THREADPOOL_THREAD_COUNT as the Python worker reads it: how many sync invocations run at
    once. None (no limit here) when unset, or when not a whole number of at least 1, which the worker
    ignores with a warning too."""
    raw = env.get(WORKER_THREADS, "").strip()
    if not raw:
        return None
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        log.warning("%s must be a whole number of at least 1, not %r: ignored", WORKER_THREADS, raw)
        return None
    return count


def _whole_number(raw: Mapping[str, object], key: str, default: int) -> int:
    """`raw[key]` as an int (a JSON number or numeric text); ConfigError naming the key otherwise."""
    value = raw.get(key, default)
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"extensions.queues.{key} must be a whole number, got {value!r}")


def is_true(value: str | None) -> bool:
    """App-setting truthiness: 1/true/yes/on (case-insensitive)."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` with the host's defaults (single instance, so newBatchThreshold = batchSize/2)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> QueueOptions:
        batch_size = _whole_number(raw, "batchSize", 16)
        if not 1 <= batch_size <= 32:
            raise ConfigError(f"extensions.queues.batchSize must be 1..32, got {batch_size}")
        encoding = str(raw.get("messageEncoding", "base64")).lower()
        if encoding not in {"base64", "none"}:
            raise ConfigError(f"extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=_whole_number(raw, "newBatchThreshold", batch_size // 2),
            max_polling_interval=max(0.1, parse_timespan(str(raw.get("maxPollingInterval", "00:01:00")))),
            visibility_timeout=parse_timespan(str(raw.get("visibilityTimeout", "00:00:00"))),
            max_dequeue_count=_whole_number(raw, "maxDequeueCount", 5),
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the local host honours."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()

    @classmethod
    def load(cls, path: Path) -> HostConfig:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        extensions = raw.get("extensions") or {}
        http = extensions.get("http") or {}
        return cls(
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            queues=QueueOptions.from_json(extensions.get("queues") or {}),
        )
