"""Pages of connections for /api/status: a deployment with hundreds of companies shows them
PAGE_SIZE at a time (`?page=N`), with a summary row per connection first. Pure."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PAGE_SIZE = 50


def page_of(names: Sequence[str], page: int | None,
            size: int = PAGE_SIZE) -> tuple[list[str], dict[str, Any]]:
    """The names on `page` (1-based, clamped to the pages there are) and where it stands."""
    pages = max(1, math.ceil(len(names) / size))
    page = min(max(1, page or 1), pages)
    start = (page - 1) * size
    return list(names[start:start + size]), {"page": page, "pages": pages, "perPage": size,
                                             "connections": len(names), "first": start + 1,
                                             "last": min(len(names), start + size)}


def requested_page(text: str | None) -> int | None:
    """`?page=` as a number (None when absent or not a positive number)."""
    try:
        page = int(text or "")
    except ValueError:
        return None
    return page if page >= 1 else None
