"""The `bc-notifications` messages: what the receiver queues and the processor reads.

Compact form (`pack_messages`): `{"traceparent", "subscriptions": [[connection, companyId, entitySet,
subscriptionId]], "changes": [[index into subscriptions, changeType, resource, lastModifiedDateTime]]}`,
each message within QUEUE_MESSAGE_BUDGET bytes. The form before it (`{"notifications": [note, ...]}`)
is still read.
"""
from __future__ import annotations

import json
from typing import Any

QUEUE_MESSAGE_BUDGET = 48 * 1024  # bytes of JSON per queue message (the service allows 64 KiB)


NOTE_SCOPE = ("connection", "companyId", "entitySet", "subscriptionId")  # once per message
NOTE_CHANGE = ("changeType", "resource", "lastModifiedDateTime")  # once per notification


def pack_messages(notes: list[dict[str, Any]], budget: int = QUEUE_MESSAGE_BUDGET,
                  traceparent: str | None = None) -> list[str]:
    """Queue message texts, each within `budget` bytes, in the compact form
    `{"traceparent", "subscriptions": [[connection, companyId, entitySet, subscriptionId]],
    "changes": [[index into subscriptions, changeType, resource, lastModifiedDateTime]]}`: a note's
    scope once per message, not once per note, so storage takes less than half the bytes and the ack
    comes sooner (`traceparent`: the receiving request's trace, which the processing joins)."""
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one, not one a note
    head = f'{{"traceparent":{encode(traceparent)},"subscriptions":[' if traceparent else '{"subscriptions":['
    frame = len(head) + len('],"changes":[]}')
    messages: list[str] = []
    scopes: dict[tuple[Any, ...], int] = {}
    scope_texts: list[str] = []
    changes: list[str] = []
    size = frame
    for note in notes:
        scope = tuple(note.get(k) for k in NOTE_SCOPE)
        while True:
            index = scopes.get(scope, len(scopes))
            scope_text = encode(list(scope)) if index == len(scopes) else ""
            text = encode([index, *(note.get(k) for k in NOTE_CHANGE)])
            length = _utf8_length(text) + 1 + (_utf8_length(scope_text) + 1 if scope_text else 0)
            if not changes or size + length <= budget:
                break
            messages.append(head + ",".join(scope_texts) + '],"changes":[' + ",".join(changes) + "]}")
            scopes, scope_texts, changes, size = {}, [], [], frame
        if scope_text:
            scopes[scope] = index
            scope_texts.append(scope_text)
        changes.append(text)
        size += length
    if changes:
        messages.append(head + ",".join(scope_texts) + '],"changes":[' + ",".join(changes) + "]}")
    return messages


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def parse_queued(text: str) -> list[dict[str, Any]]:
    """The notes of a `bc-notifications` message; raises ValueError if it is not one (also for text
    that is not UTF-8 or nested too deeply to parse)."""
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for undecodable bytes
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if isinstance(message, dict) and "changes" in message:
        return unpack_changes(message)
    notes = message.get("notifications") if isinstance(message, dict) else None  # before the compact form
    if not isinstance(notes, list) or not all(isinstance(n, dict) for n in notes):
        raise ValueError("not a bc-notifications message")
    return notes


def unpack_changes(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The notes of a compact message (`pack_messages`); raises ValueError if it is malformed."""
    scopes, changes = message.get("subscriptions"), message.get("changes")
    if not isinstance(scopes, list) or not isinstance(changes, list) or not all(
            isinstance(s, list) and len(s) == len(NOTE_SCOPE) for s in scopes) or not all(
            isinstance(c, list) and len(c) == 1 + len(NOTE_CHANGE) and type(c[0]) is int
            and 0 <= c[0] < len(scopes) for c in changes):
        raise ValueError("not a bc-notifications message")
    return [dict(zip(NOTE_SCOPE, scopes[c[0]], strict=True)) | dict(zip(NOTE_CHANGE, c[1:], strict=True))
            for c in changes]


def queued_traceparent(text: str) -> str | None:
    """The trace a `bc-notifications` message was queued in (None if it names none)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = message.get("traceparent") if isinstance(message, dict) else None
    return value if isinstance(value, str) else None
