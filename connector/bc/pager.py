"""The one pager: every read of a BC collection follows `@odata.nextLink` here, and only here.

A read yields one `Page` per request, may fetch the next page while the caller handles the current
one (`prefetch`), stops after a page when `go_on()` says so (the page's `next_link` is where it
resumes), and can start from a saved link. A link, from BC's answer or read back from a table, is
never fetched as given: the client's `resolve` (`connector.bc.links`) rebuilds it on the BC origin
under the environment's API root or stops the read with `ForeignLink` before anything is sent. A
link that comes round again stops it with `RepeatedLink` instead of looping.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import requests

from connector.bc.errors import BCError
from connector.bc.links import ForeignLink

__all__ = ["ForeignLink", "Page", "PageSource", "RepeatedLink", "read_pages"]

NEXT_LINK = "@odata.nextLink"


class RepeatedLink(BCError):
    """BC answered a next link this read had already followed: the read would never end."""

    def __init__(self, url: str):
        super().__init__(f"next link {url!r} came round again; paging stopped", code="RepeatedLink",
                         method="GET")


class PageSource(Protocol):
    """What the pager needs of a client (`BCClient` is one; the pager does not import it)."""

    def url(self, path: str) -> str: ...

    def resolve(self, link: str, relative_to: str | None = None, what: str = "link") -> str: ...

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> requests.Response: ...


@dataclass(frozen=True)
class Page:
    """One page of a collection: its entities, the link to the next page (None: the last one) and
    the response's headers (BC's `Date`, for one)."""

    entities: list[dict[str, Any]]
    next_link: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


READ_ONLY_HEADER = "Data-Access-Intent"


def read_pages(client: PageSource, path: str, params: Mapping[str, Any] | None = None, *,
               page_size: int | None = None, resume_from: str | None = None,
               prefetch: bool = False, go_on: Callable[[], bool] = lambda: True,
               read_only: bool = False) -> Iterator[Page]:
    """The pages of `path` (or of the read that stopped at `resume_from`), one request each.

    After a page with a next link, `go_on()` decides whether the read goes on; if not, that page is
    the last one yielded and its `next_link` is where to resume. With `prefetch` the next page is
    requested while the caller handles this one. `read_only` reads BC's read-only replica
    (`Data-Access-Intent: ReadOnly`, bc-api.md §12.3), which lags a little: for bulk reads only."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    if read_only:
        headers[READ_ONLY_HEADER] = "ReadOnly"
    seen: set[str] = set()
    if resume_from:
        url, query = client.resolve(resume_from, what="saved link"), None
        seen.add(resume_from)
    else:
        url, query = client.url(path), params

    def fetch(url: str, query: Mapping[str, Any] | None) -> requests.Response:
        return client.request("GET", url, params=query, headers=headers)

    with ThreadPoolExecutor(1, thread_name_prefix="bc-prefetch") if prefetch else nullcontext() as pool:

        def request(url: str, query: Mapping[str, Any] | None) -> Callable[[], requests.Response]:
            """The response of a GET: sent now on the prefetch thread, or when asked for."""
            return partial(fetch, url, query) if pool is None else pool.submit(fetch, url, query).result

        ahead: Callable[[], requests.Response] | None = request(url, query)
        while ahead is not None:
            response = ahead()
            body = response.json()
            next_link, ahead = body.get(NEXT_LINK), None
            if next_link:
                next_link = client.resolve(next_link, response.url or url, "next link")
                if next_link in seen:
                    raise RepeatedLink(next_link)
                seen.add(next_link)
                if go_on():
                    ahead = request(next_link, None)
            yield Page(body.get("value", []), next_link, response.headers)
