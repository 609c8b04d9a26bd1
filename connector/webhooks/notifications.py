"""The `bc-notifications` messages: what the receiver queues and the processor reads.

Compact form (`pack_messages`): `{"traceparent", "subscriptions": [[connection, companyId, entitySet,
subscriptionId]], "changes": [[index into subscriptions, changeType, resource, lastModifiedDateTime]]}`,
each message within QUEUE_MESSAGE_BUDGET bytes. The form before it (`{"notifications": [note, ...]}`)
is still read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from connector.signing import Signer, UnsignedMessage, open_json

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


@dataclass(frozen=True)
class NotificationBatch:
    """One `bc-notifications` delivery, read once where it enters (`read_batch`): its notes and the
    trace it was queued in, or why it is refused (`refused`; the text is then kept on the poison queue)."""

    text: str
    message_id: str
    notes: tuple[dict[str, Any], ...] = ()
    traceparent: str | None = None
    refused: str | None = None


def read_batch(signer: Signer, text: str, message_id: str) -> NotificationBatch:
    """The batch a message carries: its text parsed once, its signature checked (`open_json`)."""
    try:
        message: Any = _loads(text)
    except ValueError:
        message = None
    trace = message.get("traceparent") if isinstance(message, dict) else None
    trace = trace if isinstance(trace, str) else None
    try:
        open_json(signer, text)
        text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for undecodable bytes
        notes = notes_of(message)
    except ValueError as exc:
        why = str(exc) if isinstance(exc, UnsignedMessage) else "not a bc-notifications message"
        return NotificationBatch(text, message_id, traceparent=trace, refused=why)
    return NotificationBatch(text, message_id, tuple(notes), trace)


def parse_queued(text: str) -> list[dict[str, Any]]:
    """The notes of a `bc-notifications` message; raises ValueError if it is not one (also for text
    that is not UTF-8 or nested too deeply to parse)."""
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for undecodable bytes
    return notes_of(_loads(text))


def _loads(text: str) -> Any:
    """The JSON value of a text; ValueError if it is not JSON (also when nested too deeply)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def notes_of(message: Any) -> list[dict[str, Any]]:
    """The notes of a parsed message (either form); raises ValueError if it is not one."""
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
