"""Large orders by claim check: a `sales-orders` message may carry its order in a blob.

The message is then a small JSON object with `dataref`, the URL of a blob in container
`sales-order-payloads` of the connector's storage account (the convention events use the other way
round), and optionally other order fields (`externalDocumentNumber`, `connection`, ...). The blob holds
the order's JSON object; the message's fields are added to it, and a field given in both with two
values is refused. Any other URL is refused too: the connector reads only that container, with its
own identity (a query string, e.g. a SAS, is ignored), and never deletes the blob. Format and
permissions: docs/sales-orders.md.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from connector.orders.schema import DATAREF, OrderRejected, load_json

MAX_ECHOED_CHARS = 200  # a refused dataref is quoted this far: the result must fit in a queue message
RETRIED_STATUSES = (408, 412, 429)  # 412: the blob changed while it was read; read it again


def claim_check(text: str) -> dict[str, Any] | None:
    """The message's fields if it references a blob (has `dataref`), else None (an inline order)."""
    if f'"{DATAREF}"' not in text:  # cheap test first: most orders are inline
        return None
    try:
        fields = load_json(text)
    except OrderRejected:
        return None  # malformed: parse_order names the problem
    return fields if isinstance(fields, dict) and DATAREF in fields else None


def blob_name(dataref: Any, container_url: str) -> str:
    """The blob's name inside the container at `container_url`, or OrderRejected (`InvalidDataRef`)."""
    expected = f"{container_url.rstrip('/')}/<blob name>"
    if not isinstance(dataref, str) or not dataref.strip():
        raise OrderRejected("InvalidDataRef", f"dataref must be a blob URL ({expected})")
    ref, home = urlsplit(dataref.strip()), urlsplit(container_url.rstrip("/"))
    prefix = home.path + "/"
    name = unquote(ref.path[len(prefix):]) if ref.path.startswith(prefix) else ""
    if ref.netloc.lower() != home.netloc.lower() or not name or _climbs(name):
        raise OrderRejected("InvalidDataRef", f"dataref {_clip(dataref)!r} is not a blob in the "
                            f"connector's order payload container ({expected})")
    return name


def merged_order(fields: dict[str, Any], payload: bytes, name: str) -> str:
    """The order text: the blob's JSON object with the message's other fields added."""
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OrderRejected("DataRefUnreadable", f"blob {name!r} is not UTF-8 text ({exc})") from None
    order = load_json(text, f"blob {name!r}")
    if not isinstance(order, dict):
        raise OrderRejected("InvalidMessage", f"blob {name!r} must hold a JSON object (the order)")
    if DATAREF in order:
        raise OrderRejected("InvalidMessage", f"blob {name!r} has a dataref itself; it must hold the order")
    extra = {k: v for k, v in fields.items() if k != DATAREF}
    clashes = sorted(k for k, v in extra.items() if k in order and order[k] != v)
    if clashes:
        raise OrderRejected("InvalidMessage", f"{', '.join(clashes)}: the message and blob {name!r} "
                            "give different values")
    return json.dumps(order | extra, ensure_ascii=False)


def read_payload(container: ContainerClient, name: str, max_bytes: int) -> bytes:
    """The blob's bytes, or OrderRejected (`DataRefNotFound`, `DataRefTooLarge`, `DataRefUnreadable`).
    Throttling, server errors and a blob changed mid-read raise as they are, for the host to retry."""
    blob = container.get_blob_client(name)
    try:
        props = blob.get_blob_properties()
        if props.size > max_bytes:
            raise OrderRejected("DataRefTooLarge", f"blob {name!r} has {props.size} bytes; an order blob "
                                f"may have at most {max_bytes} (SALES_ORDER_MAX_PAYLOAD_BYTES)")
        return blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified).readall()
    except ResourceNotFoundError:
        raise OrderRejected("DataRefNotFound", f"blob {name!r} does not exist in container "
                            f"{container.container_name!r}") from None
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if 400 <= status < 500 and status not in RETRIED_STATUSES:
            code = getattr(exc, "error_code", None) or status
            raise OrderRejected("DataRefUnreadable", f"blob {name!r} cannot be read: {code} "
                                f"(HTTP {status})") from None
        raise


def order_text(container: ContainerClient, text: str, max_bytes: int) -> str:
    """The order a message carries: its text, or for a claim check the referenced blob's order."""
    fields = claim_check(text)
    if fields is None:
        return text
    name = blob_name(fields[DATAREF], container.url)
    return merged_order(fields, read_payload(container, name, max_bytes), name)


def _climbs(name: str) -> bool:
    """A name with `.` or `..` segments could leave the container once a URL is normalised."""
    return any(segment in (".", "..") for segment in name.replace("\\", "/").split("/"))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS - 1] + "…"
