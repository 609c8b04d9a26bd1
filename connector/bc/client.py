"""The Business Central API client: the only way the connector talks to BC.

One `requests.Session` per connection with the bearer token, sent only to the BC host; paging
through the one pager (`pager.py`); BC error JSON turned into typed errors; retries with exponential
back-off and jitter that honour `Retry-After` (429/5xx, timeouts); a token refresh on 401; and a
budget per principal (the app or user the token names) that keeps to BC's limits (≤5 concurrent,
≤6,000 per 5 minutes) across every instance (`connector.bc.budget`). Writes that are not idempotent
(POST) are retried only where BC cannot have carried them out (429, 503, connection refused);
otherwise the error says `ambiguous` and the caller checks first.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from connector.bc.budget import Budget, SharedBudget, in_first_line, principal_of
from connector.bc.errors import BCError, TokenUnavailable, error_from_response
from connector.bc.keys import checked_guid
from connector.bc.links import ApiRoot
from connector.bc.pager import Page, read_pages
from connector.bc.principals import Principal, Principals
from connector.retry import RetryPolicy, parse_retry_after
from connector.settings import BCLimits
from connector.telemetry import BCCall, Telemetry, get_telemetry

log = logging.getLogger(__name__)

TokenProvider = Callable[[bool], str]
"""Returns a bearer token; `True` asks for a fresh one (the last was refused)."""

_DROPPED = object()  # the principal's token failed and it dropped out: go on with another
ANY_SLOT_WAIT_SECONDS = 0.25  # a request waiting for any principal's slot looks again this often


def _may_have_arrived(exc: requests.ConnectionError) -> bool:
    """False when the connection was never made (so BC cannot have seen the request)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError)


def bc_session(pool: int) -> requests.Session:
    """An HTTP session for BC calls with `pool` keep-alive connections per host, no urllib3 retries
    (the client's policy retries) and no cookies kept: the runtime gives one session to every
    connection's client (1,000 connections on one BC host: one pool, not 1,000 sessions each with
    its own TLS connections), so a cookie one tenant's answer set must not ride on another's request."""
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=10, pool_maxsize=pool, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"Accept": "application/json", "Data-Access-Intent": "ReadWrite"})
    return session


class BCClient:
    """Calls to one BC environment for one connection (`session`: shared with other clients; by
    default its own)."""

    def __init__(
        self,
        base_url: str,
        token: TokenProvider | Principals,
        *,
        budget: Budget,
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 100.0,
        verify: bool | str = True,
        connection: str = "",
        sleep: Callable[[float], None] = time.sleep,
        telemetry: Telemetry | None = None,
        on_throttled_out: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_root = ApiRoot.of(self.base_url)  # the only origin the token is sent to
        self.origin = self.api_root.origin
        # One token provider is one principal named after the connection.
        self.principals = token if isinstance(token, Principals) else Principals(
            [(connection, token)], budget.max_concurrency)
        self.budget = budget
        self.retry = retry
        self.timeout = timeout
        self.connection = connection
        self._sleep = sleep
        self.telemetry = telemetry or get_telemetry()
        self._on_throttled_out = on_throttled_out  # BC kept answering 429 through every retry
        self._verify = verify  # per request: REQUESTS_CA_BUNDLE would override Session.verify
        self._budget_keys: dict[str, tuple[str, str]] = {}  # principal -> (token, whom BC counts it against)
        # a slot's connection kept
        self.session = session or bc_session(max(10, budget.max_concurrency * 2 * len(self.principals)))

    @classmethod
    def from_limits(cls, base_url: str, token: TokenProvider | Principals, limits: BCLimits,
                    budget: Budget, **kw: Any) -> "BCClient":
        return cls(base_url, token, budget=budget, timeout=limits.timeout_seconds,
                   retry=RetryPolicy(limits.max_retries, limits.backoff_seconds,
                                     limits.backoff_max_seconds), **kw)

    # URLs -------------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """Absolute URL: a full URL is rebuilt on the BC origin under the environment's API root
        (`resolve`; ForeignLink otherwise); others are relative to `.../api/v2.0`."""
        if "://" in path or path.startswith(("//", "\\")) or ":" in path.split("/", 1)[0]:
            return self.resolve(path, what="URL")
        return f"{self.base_url}/{path.lstrip('/')}"

    def resolve(self, link: str, relative_to: str | None = None, what: str = "link") -> str:
        """A URL that BC or storage provided (next link, saved link, business event `Url`) as a safe
        target on the BC origin (`connector.bc.links`); ForeignLink, with nothing sent, otherwise."""
        return self.api_root.resolve(link, relative_to, what)

    def company_path(self, company_id: str, path: str) -> str:
        """`companies(<id>)/<path>`; InvalidKey unless `company_id` is a GUID."""
        return f"companies({checked_guid(company_id, 'companyId')})/{path.lstrip('/')}"

    def api_path(self, api: str, company_id: str, path: str) -> str:
        """A company's `path` on an API route: relative for the standard API (`v2.0`), absolute on the
        BC host for a custom API page's route (`publisher/group/version`)."""
        relative = self.company_path(company_id, path)
        return relative if api == "v2.0" else f"{self.environment_root}/api/{api}/{relative}"

    @property
    def environment_root(self) -> str:
        """`{host}/v2.0/{tenant}/{environment}` (for `api/microsoft/runtime/beta/...`)."""
        return self.base_url.rsplit("/api/", 1)[0]

    # Requests ---------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send with budget, retries and token refresh; raise `BCError` on failure."""
        method = method.upper()
        url = self.url(path)
        if idempotent is None:
            idempotent = method != "POST"
        shown = urlsplit(url).path
        with self.telemetry.bc_request(self.connection, method, shown) as call:
            return self._send(call, method, url, shown, params, json_body, headers, idempotent)

    def _send(self, call: BCCall, method: str, url: str, shown: str, params: Mapping[str, Any] | None,
              json_body: Any, headers: Mapping[str, str] | None, idempotent: bool) -> requests.Response:
        """The attempts of one request, each on the principal with the most free capacity: a token
        refresh on 401, retries with back-off, a principal whose token fails left for another."""
        retrying = self.retry.start()
        # prepared once, before any slot is held (BC's slots are for BC's time); each attempt adds
        # its principal's token
        prepared = self._prepare(call, method, url, params, json_body, headers)
        dropped: list[Principal] = []
        while True:
            principal, ticket = self._choose(dropped)
            try:
                error = self._on(principal, ticket, call, prepared, method, shown, idempotent)
            finally:
                self.principals.give_back(principal)
            if error is _DROPPED:
                dropped.append(principal)
                continue
            if isinstance(error, requests.Response):
                self.principals.recovered(principal)
                return error
            assert isinstance(error, BCError)
            # the ambiguous-POST rule: a write BC may have carried out is never simply sent again
            can_retry = error.retryable and (idempotent or not error.ambiguous)
            delay = retrying.next_delay(error.retry_after) if can_retry else None
            if delay is None:
                if error.status == 429 and retrying.retries and self._on_throttled_out is not None:
                    self._on_throttled_out(f"{method} {shown} still throttled after {retrying.retries} "
                                           "retries")
                raise error
            log.warning("bc %s: %s %s failed (%s); retry %d in %.1fs", self.connection, method,
                        shown, error.status or "no response", retrying.retries, delay)
            call.backoff(delay)
            self._sleep(delay)

    def _choose(self, dropped: list[Principal]) -> tuple[Principal, object | None]:
        """The principal of the next attempt (counted in flight): with several, the first, by free
        capacity, on which this instance holds a slot free right now (its ticket); while the
        instance holds all their slots, the first of them to come free; else the one with the fewest
        requests of this client on it (the slot is waited for in `_attempt`)."""
        try_acquire = getattr(self.budget, "try_acquire", None)
        shared = self.budget if isinstance(self.budget, SharedBudget) else None
        since = time.monotonic()
        while True:
            order = self.principals.candidates(dropped)
            if len(order) < 2 or try_acquire is None:
                break
            seen = shared.freed() if shared is not None else 0
            keys = []
            for principal in order:
                known = self._budget_keys.get(principal.name)
                ticket = try_acquire(known[1]) if known else None
                if ticket is not None:
                    self.principals.hold(principal)
                    return principal, ticket
                keys.append(known[1] if known else "")
            # One queue for all of them while this instance holds every slot they have (nothing to
            # lease): the first slot to come free serves a waiting request, whichever principal it
            # belongs to. A key check (first in line) waits on its principal, ahead of the others.
            if (shared is None or in_first_line() or not all(keys) or not shared.holds_all(keys)
                    or time.monotonic() - since > shared.tuning.deadline_seconds):  # then its own deadline
                break
            shared.wait_freed(seen, ANY_SLOT_WAIT_SECONDS)
        self.principals.hold(order[0])
        return order[0], None

    def _on(self, principal: Principal, ticket: object | None, call: BCCall,
            prepared: requests.PreparedRequest, method: str, shown: str,
            idempotent: bool) -> requests.Response | BCError | object:
        """One attempt on `principal` (and one more with a fresh token after a 401), on `ticket` if
        its slot is already held; `_DROPPED` when its token failed and another principal can take over
        (nothing was sent that BC accepted)."""
        for force_token in (False, True):
            try:
                token = principal.token(force_token)
            except (TokenUnavailable, BCError) as exc:
                if ticket is not None:
                    self.budget.release(ticket)
                if not self.principals.can_drop(principal):
                    raise
                self._drop(principal, str(exc))
                return _DROPPED
            held, ticket = ticket, None
            error = self._attempt(call, prepared, method, shown, idempotent, token, principal, held)
            if isinstance(error, requests.Response) or error.status != 401:
                return error
            if force_token:
                if self.principals.can_drop(principal):
                    self._drop(principal, f"BC refused a fresh token: {error}")
                    return _DROPPED
                return error
            log.info("bc %s: token refused on %s %s; refreshing", principal.name, method, shown)
        raise AssertionError("unreachable")

    def _drop(self, principal: Principal, why: str) -> None:
        self.principals.drop(principal, why)
        log.warning("bc %s: principal %s drops out for a while, the others carry on: %s",
                    self.connection, principal.name, why)

    def _prepare(self, call: BCCall, method: str, url: str, params: Mapping[str, Any] | None,
                 json_body: Any, headers: Mapping[str, str] | None) -> requests.PreparedRequest:
        """The request as sent, but for its `Authorization` header (each attempt adds its token)."""
        all_headers = {"client-request-id": call.request_id}
        if json_body is not None:
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)
        data = None if json_body is None else json.dumps(json_body, separators=(",", ":"))
        return self.session.prepare_request(
            requests.Request(method, url, params=params, data=data, headers=all_headers))

    def _attempt(self, call: BCCall, prepared: requests.PreparedRequest, method: str, shown: str,
                 idempotent: bool, token: str, principal: Principal,
                 held: object | None = None) -> requests.Response | BCError:
        request = prepared.copy()
        request.headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        key = self._budget_key(principal, token)
        ticket = held if held is not None else self.budget.acquire(key)
        try:
            resp = self.session.send(request, **self._send_options)
        except requests.ConnectionError as exc:
            call.attempt(None)
            return BCError(f"connection failed: {type(exc).__name__}", retryable=True,
                           ambiguous=_may_have_arrived(exc) and not idempotent,
                           method=method, path=shown)
        except requests.Timeout:
            call.attempt(None)
            return BCError(f"no response within {self.timeout:g}s", retryable=True,
                           ambiguous=not idempotent, method=method, path=shown)
        finally:
            self.budget.release(ticket)
        call.attempt(resp.status_code)
        log.debug("bc %s: %s %s -> %d in %.0f ms", self.connection, method, shown,
                  resp.status_code, (time.monotonic() - started) * 1000)
        if resp.status_code < 400:
            return resp
        try:
            body = resp.json()
        except ValueError:
            body = None
        return error_from_response(
            resp.status_code, body, method=method, path=shown, idempotent=idempotent,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )

    @cached_property
    def _send_options(self) -> dict[str, Any]:
        """`Session.send`'s options: the environment's proxies and CA bundle (as `Session.request`
        merges them) with our `verify` and timeout, worked out once (every request goes to the BC
        host: `url` refuses any other)."""
        options = self.session.merge_environment_settings(self.base_url, {}, None, self._verify, None)
        return options | {"timeout": self.timeout}

    def _budget_key(self, principal: Principal, token: str) -> str:
        """Whom BC counts this token's requests against (else the principal's name)."""
        seen, key = self._budget_keys.get(principal.name, ("", ""))
        if token != seen:
            key = principal_of(token) or f"connection:{principal.name}"
            self._budget_keys[principal.name] = (token, key)
        return key

    # JSON helpers -----------------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params, headers=headers).json()

    def post(self, path: str, body: Any, params: Mapping[str, Any] | None = None,
             *, idempotent: bool = False) -> dict[str, Any]:
        resp = self.request("POST", path, params=params, json_body=body, idempotent=idempotent)
        return resp.json() if resp.content else {}

    def patch(self, path: str, body: Any, etag: str) -> dict[str, Any]:
        return self.request("PATCH", path, json_body=body, headers={"If-Match": etag}).json()

    def delete(self, path: str, etag: str = "*") -> None:
        self.request("DELETE", path, headers={"If-Match": etag})

    def pages(self, path: str, params: Mapping[str, Any] | None = None, *,
              page_size: int | None = None, resume_from: str | None = None, prefetch: bool = False,
              go_on: Callable[[], bool] = lambda: True, read_only: bool = False) -> Iterator[Page]:
        """The pages of a collection, one request each (see `pager.read_pages`; `read_only`: from
        BC's lagging read-only replica, for bulk reads only)."""
        return read_pages(self, path, params, page_size=page_size, resume_from=resume_from,
                          prefetch=prefetch, go_on=go_on, read_only=read_only)

    def iter_pages(self, path: str, params: Mapping[str, Any] | None = None, page_size: int | None = None,
                   *, read_only: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Each page's entities, to the end of the collection."""
        for page in self.pages(path, params, page_size=page_size, read_only=read_only):
            yield page.entities

    def iter_entities(self, path: str, params: Mapping[str, Any] | None = None,
                      page_size: int | None = None, *, read_only: bool = False) -> Iterator[dict[str, Any]]:
        for page in self.pages(path, params, page_size=page_size, read_only=read_only):
            yield from page.entities
