"""One line per queue message for people: time, type, the key fields, the queue; colour on a
terminal (ANSI, off with NO_COLOR or when piped)."""
from __future__ import annotations

import json
from datetime import datetime
from fnmatch import fnmatch
from typing import Any, TextIO

from connector.settings import QUEUE_COMMAND_RESULTS, QUEUE_SALES_ORDER_RESULTS, environment_value

_COLOURS = {"created": "32", "updated": "33", "deleted": "31", "failed": "31", "poison": "31",
            "pulled": "36", "duplicate": "36"}
_KEY_FIELDS = ("number", "displayName", "orderNumber", "customerNumber", "externalDocumentNumber",
               "summary", "fix")


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and not environment_value("NO_COLOR")


def message_type(queue: str, body: Any) -> str:
    """The type a `--type` filter matches: a CloudEvent's `type`, `order.<status>` for an order
    result, `poison.<queue>` for a poison message."""
    if queue.endswith("-poison"):
        return f"poison.{queue.removesuffix('-poison')}"
    if queue == QUEUE_SALES_ORDER_RESULTS and isinstance(body, dict):
        return f"order.{body.get('status', '?')}"
    if queue == QUEUE_COMMAND_RESULTS and isinstance(body, dict):
        return f"command.{body.get('status', '?')}"
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return body["type"]
    return f"message.{queue}"


def type_matches(kind: str, patterns: list[str]) -> bool:
    """`--type` patterns (shell-style, `bc.` optional): `bc.item.*`, `item.created`, `order.*`."""
    return not patterns or any(fnmatch(kind, p) or fnmatch(kind, f"bc.{p}") for p in patterns)


def parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def describe(queue: str, body: Any) -> str:
    """The key fields of a message, short."""
    if queue.endswith("-poison") or not isinstance(body, dict):
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        return _clip(" ".join(text.split()), 120)
    if queue in (QUEUE_SALES_ORDER_RESULTS, QUEUE_COMMAND_RESULTS):
        parts = [f"type={body.get('type')}"] if queue == QUEUE_COMMAND_RESULTS else []
        parts.append(f"key={body.get('externalDocumentNumber', body.get('key'))}")
        if body.get("number"):
            parts.append(f"{'order' if queue == QUEUE_SALES_ORDER_RESULTS else 'number'}={body['number']}")
        error = body.get("error") or {}
        if error:
            parts.append(f"{error.get('code')}: {_clip(str(error.get('message', '')), 160)}")
        return "  ".join(parts)
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else {}
    parts = [f"{name}={_value(data[name])}" for name in _KEY_FIELDS if data.get(name) not in (None, "")]
    lines = [k for k, v in data.items() if k.endswith("Lines") and isinstance(v, list)]
    parts += [f"{len(data[k])} {'line' if len(data[k]) == 1 else 'lines'}" for k in lines]
    variants = data.get("itemVariants")
    if isinstance(variants, list) and variants:
        parts.append(f"variants={','.join(str(v.get('code')) for v in variants)}")
    if body.get("dataref"):
        parts.append("data in a blob (dataref)")
    subject = str(body.get("subject", ""))
    parts.append(f"subject={subject[:8]}…" if len(subject) > 12 else f"subject={subject}")
    return "  ".join(parts)


def format_line(queue: str, text: str, inserted: datetime | None, colour: bool) -> str:
    body = parse(text)
    kind = message_type(queue, body)
    when = (inserted.astimezone() if inserted else datetime.now().astimezone()).strftime("%H:%M:%S")
    shown = f"{printable(kind):<26}"
    if colour:
        code = _COLOURS.get(kind.rsplit(".", 1)[-1]) or _COLOURS.get(kind.split(".", 1)[0], "0")
        shown = f"\033[{code}m{shown}\033[0m"
        when = f"\033[2m{when}\033[0m"
    return f"{when}  {shown}  {printable(describe(queue, body))}  ({queue})"


def printable(text: str) -> str:
    """`text` with control characters (a terminal's escape sequences among them) shown as `\\xNN`."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if " " in text else text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
