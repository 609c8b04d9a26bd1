"""Item variant ids for order lines that name `itemNumber` and `variantCode`, looked up in BC and
cached by an object the runtime owns."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from connector.bc.client import BCClient
from connector.bc.lookups import odata_string
from connector.orders.schema import OrderRejected, SalesOrderLineMessage

ITEM_CACHE_SECONDS = 600.0


def variant_wanted(lines: Iterable[SalesOrderLineMessage]) -> set[tuple[str, str]]:
    """(item no., variant code) pairs to resolve, upper-cased like BC's Code fields."""
    return {(line.item_number.upper(), line.variantCode.upper())
            for line in lines if line.variantCode is not None and line.item_number is not None}


class ItemVariants:
    """Variant ids by item no. and code, from `items?$filter=number eq '…'&$expand=itemVariants`,
    cached per BC environment and company for ITEM_CACHE_SECONDS (one request per item, not per line).
    A code missing from a cached item is looked up again once before it is refused."""

    def __init__(self, ttl: float = ITEM_CACHE_SECONDS):
        self.ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, dict[str, str]]] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def resolve(self, bc: BCClient, company_id: str,
                wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(item no., variant code) → itemVariantId; OrderRejected names an unknown item or variant."""
        out = {}
        for item, code in sorted(wanted):
            variants = self._variants(bc, company_id, item, fresh=False)
            if code not in variants:
                variants = self._variants(bc, company_id, item, fresh=True)
            if code not in variants:
                known = ", ".join(sorted(variants)) or "none"
                raise OrderRejected("UnknownVariant",
                                    f"item {item!r} has no variant {code!r} (its variants: {known})")
            out[(item, code)] = variants[code]
        return out

    def _variants(self, bc: BCClient, company_id: str, item: str, *, fresh: bool) -> dict[str, str]:
        cache_key = (bc.base_url, company_id, item)
        with self._lock:
            lock = self._locks.setdefault(cache_key, threading.Lock())
        with lock:  # one lookup per item at a time: concurrent orders for it share the answer
            hit = self._cache.get(cache_key)
            if hit and not fresh and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            items = bc.get(bc.company_path(company_id, "items"),
                           {"$filter": f"number eq {odata_string(item)}", "$expand": "itemVariants"})
            found = items.get("value", [])
            if not found:
                raise OrderRejected("UnknownItem", f"item {item!r} does not exist")
            variants = {str(v["code"]).upper(): str(v["id"]) for v in found[0].get("itemVariants", [])}
            self._cache[cache_key] = (time.monotonic(), variants)
            return variants
