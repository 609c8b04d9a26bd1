"""A stand-in browser for sign-ins, raw table snapshots, and a counter of Entra token requests."""
from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from azure.data.tables import TableServiceClient

from devtools.emulator.entra import read_form_post

PAST_TOKEN_LIFETIME = 3700  # seconds of emulator time: its tokens live 3600 s
NEVER = "0 0 0 1 1 *"  # timers stay quiet: no background BC calls during a test
QUIET_TIMERS = {"ITEM_PULL_SCHEDULE": NEVER, "SUBSCRIPTION_RENEWAL_SCHEDULE": NEVER, "SWEEP_SCHEDULE": NEVER}
CODE_FLOW = {"BC_GRANT_TYPE": "authorization_code", **QUIET_TIMERS}


@dataclass
class SignIn:
    """What the browser saw: the authorize URL, Entra's redirect to the callback, the final page."""

    authorize_url: str
    callback_url: str
    page: requests.Response

    @property
    def callback_params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.callback_url).query).items()}


def start_login(host: Any, connection: str = "default") -> str:
    """GET the login route; the Entra authorize URL it redirects to."""
    resp = requests.get(f"{host.url}/api/connections/{connection}/login", allow_redirects=False, timeout=30)
    assert resp.status_code == 302, resp.text
    return resp.headers["Location"]


def authorize(emulator: Any, authorize_url: str) -> str:
    """The emulator's authorize endpoint signs the user in and answers the callback: a self-posting
    form (`response_mode=form_post`) or a redirect. The callback as a URL whose query holds the
    answer (`post_callback` sends it as the form a browser would POST)."""
    resp = requests.get(authorize_url, verify=emulator.ca_bundle, allow_redirects=False, timeout=30)
    if resp.status_code == 302:
        return resp.headers["Location"]
    answer = read_form_post(resp.text)
    assert resp.status_code == 200 and answer is not None, resp.text
    return f"{answer[0]}?{urlencode(answer[1])}"


def post_callback(callback_url: str) -> requests.Response:
    """What a browser does with Entra's form_post page: POST the fields to the callback."""
    parts = urlsplit(callback_url)
    target = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return requests.post(target, data=dict(parse_qsl(parts.query)), allow_redirects=False, timeout=60)


def sign_in(host: Any, emulator: Any, connection: str = "default") -> SignIn:
    """A full browser-less sign-in through the local host (Entra's answer POSTed, form_post)."""
    authorize_url = start_login(host, connection)
    callback_url = authorize(emulator, authorize_url)
    page = post_callback(callback_url)
    return SignIn(authorize_url, callback_url, page)


def table_rows(connection_string: str, skip: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as stored (values and ETags)."""
    service = TableServiceClient.from_connection_string(connection_string)
    snapshot = {}
    for table in service.list_tables():
        if table.name in skip:
            continue
        rows = service.get_table_client(table.name).list_entities()
        snapshot[table.name] = sorted(
            ({**dict(r), "etag": r.metadata["etag"]} for r in rows),
            key=lambda r: (r["PartitionKey"], r["RowKey"]),
        )
    return snapshot


class TokenRequests:
    """Wraps the emulator's Entra app and records the grant type of every token request."""

    def __init__(self, entra: Any):
        self._entra = entra
        self.grants: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").endswith("/oauth2/v2.0/token"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            grant = parse_qs(body.decode()).get("grant_type", [""])[0]
            with self._lock:
                self.grants.append(grant)
        return self._entra(environ, start_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entra, name)

    def count(self, grant: str) -> int:
        with self._lock:
            return self.grants.count(grant)




def stored_cache(storage: Any, connection: str = "default") -> dict[str, Any] | None:
    """A connection's msal cache as stored in `bctokens`, decrypted with the test key."""
    from connector.auth.crypto import TokenCipher
    from connector.auth.token_store import TokenStore
    from tests.conftest import TEST_ENCRYPTION_KEY

    stored = TokenStore(storage, TokenCipher([TEST_ENCRYPTION_KEY])).load(connection)
    return json.loads(stored.state) if stored and stored.state else None


def secrets_of(cache: dict[str, Any]) -> set[str]:
    """Every access, refresh and ID token in an msal cache."""
    return {entry["secret"] for kind in ("AccessToken", "RefreshToken", "IdToken")
            for entry in cache.get(kind, {}).values()}
