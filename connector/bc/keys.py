"""Keys that go into BC URL paths, checked first: a company id or subscription id read from a queue
message, a table row or a BC answer can never add a path segment, a query or another host."""
from __future__ import annotations

import re

from connector.bc.errors import BCError

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# BC's subscription ids: 32 hex digits (bc-api.md §7, subscriptionId), a GUID form accepted too
SUBSCRIPTION_ID_RE = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})$")


class InvalidKey(BCError):
    """A value that should be a BC key is not one; nothing was sent (permanent)."""

    def __init__(self, what: str, value: object):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__(f"{what} {shown} is not a valid key; nothing was sent to BC", code="InvalidKey")


def is_guid(value: object) -> bool:
    return isinstance(value, str) and GUID_RE.match(value) is not None


def checked_guid(value: object, what: str) -> str:
    """`value` if it is a GUID, else InvalidKey."""
    if not is_guid(value):
        raise InvalidKey(what, value)
    return str(value)


def subscription_path(subscription_id: object) -> str:
    """`subscriptions('<id>')` for a valid BC subscription id, else InvalidKey."""
    if not (isinstance(subscription_id, str) and SUBSCRIPTION_ID_RE.match(subscription_id)):
        raise InvalidKey("subscriptionId", subscription_id)
    return f"subscriptions('{subscription_id}')"
