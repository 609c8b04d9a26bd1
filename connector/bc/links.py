"""BC-provided URLs to safe request targets: the bearer token goes to BC's origin and nowhere else.

A URL that comes from BC (a next link, a business event's `Url`) or from storage (a saved next
link) is never fetched as given. `ApiRoot.resolve` checks it strictly (no backslash, whitespace,
control or non-ASCII character; no userinfo; the configured scheme, host and port; a path with no dot
segments under the environment's API root `/v2.0/{tenant}/{environment}/api/`) and rebuilds it from the
configured origin plus the link's path and query; it then checks where `requests` (urllib3's parser,
which differs from `urllib.parse`: a backslash ends urllib3's authority) would actually connect.
Anything else raises `ForeignLink` before a token is asked for.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import requests
from urllib3.util import parse_url

from connector.bc.errors import BCError

DEFAULT_PORTS = {"https": 443, "http": 80}


class ForeignLink(BCError):
    """A URL (a next link, or one saved from it) outside the BC host or API root: refused, no token sent."""

    def __init__(self, url: str, origin: str, what: str = "link", why: str = "it is not on the BC host"):
        super().__init__(f"{what} {_shown(url)} refused: {why} {origin} (the token is never sent "
                         "to another host)", code="ForeignLink", method="GET")


def _shown(url: str) -> str:
    """The URL for a message, escaped (`repr`) and cut to 300 characters."""
    return repr(url[:300] + ("…" if len(url) > 300 else ""))


def _unsafe_character(text: str) -> str | None:
    """The first character no URL from BC may hold raw: backslash, whitespace, control, format or
    non-ASCII (BC percent-encodes everything else)."""
    for ch in text:
        if ch == "\\" or ord(ch) <= 0x20 or ord(ch) >= 0x7F or unicodedata.category(ch)[0] in "CZ":
            return ch
    return None


@dataclass(frozen=True)
class ApiRoot:
    """The configured BC origin and the environment's API root path (from the client's base URL)."""

    scheme: str
    host: str
    port: int
    root: str  # `/v2.0/{tenant}/{environment}/api/`

    @classmethod
    def of(cls, base_url: str) -> "ApiRoot":
        """From `{host}/v2.0/{tenant}/{environment}/api/v2.0` (any `/api/...` tail)."""
        parts = urlsplit(base_url)
        scheme = parts.scheme.lower()
        environment = parts.path.rstrip("/").rsplit("/api/", 1)[0]
        return cls(scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[scheme],
                   f"{environment}/api/")

    @property
    def origin(self) -> str:
        """`scheme://host:port` (the default port filled in)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        return self.host if self.port == DEFAULT_PORTS.get(self.scheme) else f"{self.host}:{self.port}"

    def resolve(self, link: str, relative_to: str | None = None, what: str = "link") -> str:
        """The safe target for `link` (absolute, or relative to `relative_to`, a URL this root made):
        the configured origin + the link's path and query. ForeignLink when it is not one."""
        def refuse(why: str) -> ForeignLink:
            return ForeignLink(link, self.origin, what, why)

        if not isinstance(link, str) or not link:
            raise refuse("it is empty or not text, so it is not on")
        bad = _unsafe_character(link)
        if bad is not None:
            raise refuse(f"it holds the character {bad!r}, so it is not safely on")
        try:
            parts = urlsplit(urljoin(relative_to, link) if relative_to else link)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError as exc:
            raise refuse(f"it does not parse ({exc}), so it is not on") from None
        if "@" in parts.netloc or parts.scheme.lower() != self.scheme or \
                (parts.hostname or "").lower() != self.host or port != self.port:
            raise refuse("it is not on the BC host")
        segments = unquote(parts.path).split("/")
        if "." in segments or ".." in segments or "\\" in unquote(parts.path):
            raise refuse("its path has dot segments, so it may leave the API root of")
        if not parts.path.lower().startswith(self.root.lower()):  # BC's tenant/environment: any case
            raise refuse(f"its path is not under {self.root} on")
        target = f"{self.scheme}://{self.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        self.check_target(target, link, what)
        return target

    def check_target(self, target: str, link: str = "", what: str = "link") -> None:
        """ForeignLink unless `requests` would connect to this origin, with no userinfo, for `target`."""
        prepared = requests.Request("GET", target).prepare().url or ""
        sent = parse_url(prepared)
        if (sent.scheme, (sent.host or "").lower(), sent.port or DEFAULT_PORTS.get(sent.scheme or ""),
                sent.auth) != (self.scheme, self.host, self.port, None):
            raise ForeignLink(link or target, self.origin, what, "requests would not send it to")


def resolve_bc_url(link: str, base_url: str, relative_to: str | None = None, what: str = "link") -> str:
    """A BC-provided URL (next link, saved link, business event `Url`) as a safe request target on the
    origin and under the environment's API root of `base_url` (the client's), else ForeignLink."""
    return ApiRoot.of(base_url).resolve(link, relative_to, what)
