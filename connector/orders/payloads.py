"""Large orders by claim check: a `sales-orders` message may carry its order in a blob.

The message is then a small JSON object with `dataref`, the URL of a blob in container
`sales-order-payloads` of the connector's storage account (the convention events use the other way
round), the blob's `sha256` (hex) and `size` (bytes), and optionally other order fields
(`externalDocumentNumber`, `connection`, ...). A blob whose size or SHA-256 differs from the message's
(replaced by anyone else with write on the container) fails with `DataRefMismatch`. The blob holds
the order's JSON object; the message's fields are added to it, and a field given in both with two
values is refused. Any other URL is refused too: the connector reads only that container, with its
own identity (a query string, e.g. a SAS, is ignored), and never deletes the blob. Format and
permissions: docs/sales-orders.md.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from connector.orders.schema import DATAREF, OrderRejected, load_json

SHA256, SIZE = "sha256", "size"  # the blob's digest (64 hex) and length in bytes, on the message
CLAIM_FIELDS = (DATAREF, SHA256, SIZE)  # the claim check's own fields: not added to the order
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
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
    extra = {k: v for k, v in fields.items() if k not in CLAIM_FIELDS}
    clashes = sorted(k for k, v in extra.items() if k in order and order[k] != v)
    if clashes:
        raise OrderRejected("InvalidMessage", f"{', '.join(clashes)}: the message and blob {name!r} "
                            "give different values")
    return json.dumps(order | extra, ensure_ascii=False)


def expected_blob(fields: dict[str, Any]) -> tuple[str, int]:
    """The (SHA-256 hex, size) the message says its blob has, or OrderRejected (`InvalidDataRef`)."""
    digest, size = fields.get(SHA256), fields.get(SIZE)
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest) or \
            isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise OrderRejected("InvalidDataRef", f"a claim check must carry the blob's {SHA256} (64 hex "
                            f"digits of its SHA-256) and {SIZE} (its length in bytes) beside {DATAREF}")
    return digest.lower(), size


def read_payload(container: ContainerClient, name: str, max_bytes: int,
                 expected: tuple[str, int] | None = None) -> bytes:
    """The blob's bytes, or OrderRejected (`DataRefNotFound`, `DataRefTooLarge`, `DataRefUnreadable`,
    `DataRefMismatch` when its size or SHA-256 is not `expected`). Throttling, server errors and a blob
    changed mid-read raise as they are, for the host to retry."""
    blob = container.get_blob_client(name)
    try:
        props = blob.get_blob_properties()
        if props.size > max_bytes:
            raise OrderRejected("DataRefTooLarge", f"blob {name!r} has {props.size} bytes; an order blob "
                                f"may have at most {max_bytes} (SALES_ORDER_MAX_PAYLOAD_BYTES)")
        if expected is not None and props.size != expected[1]:
            raise OrderRejected("DataRefMismatch", f"blob {name!r} has {props.size} bytes, the message "
                                f"says {expected[1]}: it is not the blob the producer sent")
        payload = blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified).readall()
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
    if expected is not None and not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), expected[0]):
        raise OrderRejected("DataRefMismatch", f"blob {name!r} does not have the SHA-256 the message "
                            "says: it is not the blob the producer sent")
    return payload


def order_text(container: ContainerClient, text: str, max_bytes: int) -> str:
    """The order a message carries: its text, or for a claim check the referenced blob's order."""
    fields = claim_check(text)
    if fields is None:
        return text
    name = blob_name(fields[DATAREF], container.url)
    expected = expected_blob(fields)
    return merged_order(fields, read_payload(container, name, max_bytes, expected), name)


def _climbs(name: str) -> bool:
    """A name with `.` or `..` segments could leave the container once a URL is normalised."""
    return any(segment in (".", "..") for segment in name.replace("\\", "/").split("/"))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS - 1] + "…"
