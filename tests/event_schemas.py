"""Test support: every event the tests take off an out queue is checked against its published schema."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@cache
def validator(event_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{event_type}.data.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=FormatChecker())


def checked(event: dict[str, Any]) -> dict[str, Any]:
    """The event, after asserting its envelope and (unless moved to a blob) its `data` schema."""
    assert event["specversion"] == "1.0" and event["datacontenttype"] == "application/json", event
    assert event["subject"] and event["source"].startswith("bc-connector/"), event
    if "dataref" not in event:
        errors = [e.message for e in validator(event["type"]).iter_errors(event["data"])]
        assert not errors, f"{event['type']} {event['subject']}: {errors[:3]}"
    return event
