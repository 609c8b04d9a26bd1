"""BC's Admin Center API (`{BC_API_HOST}/admin/v2.28/...`): the environments of the tenant and their
operations log (copy, point-in-time restore, rename, update). Optional: it needs the permission
AdminCenter.ReadWrite.All, which can also delete environments. Reads only, one GET per check, outside
the environment API (its own path, so not through `BCClient`'s API-root check), with the same token.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from connector.bc.errors import error_from_response

API_VERSION = "v2.28"
FAMILY = "BusinessCentral"


class AdminCenterClient:
    """GETs against the Admin Center API of one connection's host, with its bearer token."""

    def __init__(self, api_host: str, token: Callable[[bool], str], *, verify: bool | str = True,
                 timeout: float = 30.0, session: requests.Session | None = None):
        self.base = f"{api_host.rstrip('/')}/admin/{API_VERSION}"
        self._token = token
        self._verify = verify
        self._timeout = timeout
        self._session = session or requests.Session()

    def get(self, path: str) -> dict[str, Any]:
        """GET `{base}/{path}`; BCError on failure (a 401 asks for a new token once)."""
        for force in (False, True):
            resp = self._session.get(f"{self.base}/{path}", timeout=self._timeout, verify=self._verify,
                                     headers={"Authorization": f"Bearer {self._token(force)}",
                                              "Accept": "application/json",
                                              "client-request-id": str(uuid.uuid4())})
            if resp.status_code != 401:
                break
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise error_from_response(resp.status_code, body, method="GET",
                                      path=f"/admin/{API_VERSION}/{path}")
        return resp.json()

    def operations(self, environment: str) -> list[dict[str, Any]]:
        """The environment's operations (any status), oldest first by `createdOn`."""
        found = self.get(f"applications/{FAMILY}/environments/{quote(environment)}/operations")
        return sorted(found.get("value", []), key=lambda o: str(o.get("createdOn", "")))
