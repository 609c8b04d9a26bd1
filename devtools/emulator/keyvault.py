"""A minimal Azure Key Vault secrets endpoint (dev tooling, never deployed): what the connector's
`SecretResolver` reads through the real azure-keyvault-secrets SDK.

Vault `<name>` is served under `/keyvault/<name>` (KEY_VAULT_HOST points the connector here), as Key
Vault serves it on `https://<name>.vault.azure.net` (docs/emulator.md cites the sources):

* ``GET /keyvault/<vault>/secrets/<name>[/<version>]?api-version=7.x`` (or a dated version, as the
  SDK's newer defaults) → the secret bundle
  (`value`, `id` as Key Vault writes it, `attributes`).
* No bearer token → 401 with Key Vault's challenge, ``WWW-Authenticate: Bearer
  authorization="<authority>/<tenant>", resource="https://vault.azure.net"`` (the SDK reads it, asks
  its credential for a token of that resource and sends the request again).
* A token not for ``https://vault.azure.net``, unsigned by this emulator or expired → 401; a principal
  without Key Vault Secrets User on the vault → 403 ``ForbiddenByRbac``; an unknown secret or version →
  404 ``SecretNotFound``; no ``api-version`` → 400.

Admin (loopback, no token): ``PUT /_emulator/keyvault/<vault>/secrets/<name>`` ``{"value"}`` adds a
version (a rotation) and answers ``{"version"}``; ``GET /_emulator/keyvault`` lists vaults, secrets and
versions (never values). The local Function App's managed identity reads every vault unless
`readers` says otherwise.
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from werkzeug.wrappers import Request, Response

from .clock import Clock
from .config import MANAGED_IDENTITY_PRINCIPAL_ID

RESOURCE = "https://vault.azure.net"
_API_VERSION = re.compile(r"^(7\.\d+(-preview(\.\d+)?)?|20\d\d-\d\d-\d\d(-preview)?)$")  # 7.6, 2025-07-01
_PATH = re.compile(r"^/keyvault/(?P<vault>[A-Za-z0-9-]{3,24})/secrets/(?P<name>[A-Za-z0-9-]{1,127})"
                   r"(?:/(?P<version>[0-9a-fA-F]{32})?)?/?$")


@dataclass
class _Version:
    version: str
    value: str
    created: int


class KeyVault:
    """Vaults of secrets with versions; tokens checked with the emulator's Entra signing key."""

    def __init__(self, clock: Clock, public_key: Callable[[], Any], authority: Callable[[Request], str]):
        self.clock = clock
        self._public_key = public_key  # the Entra signing key's public half (it may be replaced)
        self._authority = authority  # "<base>/<tenant GUID>" for the challenge
        self._lock = threading.Lock()
        self._vaults: dict[str, dict[str, list[_Version]]] = {}
        self.readers: set[str] | None = None  # principal ids with Secrets User; None = the managed identity
        self.reads = 0  # secrets served (tests count cache hits by it)

    # ---- state -------------------------------------------------------------------------------
    def set_secret(self, vault: str, name: str, value: str) -> str:
        """Add a version of a secret (the current one from now on); its version id."""
        version = uuid.uuid4().hex
        with self._lock:
            self._vaults.setdefault(vault.lower(), {}).setdefault(name.lower(), []).append(
                _Version(version, value, int(self.clock.timestamp())))
        return version

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {v: {n: [vars(x) for x in versions] for n, versions in secrets.items()}
                    for v, secrets in self._vaults.items()}

    def restore(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._vaults = {v: {n: [_Version(**x) for x in versions] for n, versions in secrets.items()}
                            for v, secrets in state.items()}

    # ---- the data plane ----------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self._answer(Request(environ))(environ, start_response)

    def _answer(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if match is None or request.method != "GET":
            return _error(404 if match is None else 405, "NotFound" if match is None else "MethodNotAllowed",
                          "The requested operation is not supported by this emulator (GET secret only).")
        if not _API_VERSION.match(request.args.get("api-version", "")):
            return _error(400, "BadParameter", "The 'api-version' query parameter is required (7.x or a "
                          "dated version such as 2025-07-01).")
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return self._challenge(request, "AKV10000: Request is missing a Bearer or PoP token.")
        try:
            claims = jwt.decode(auth[7:].strip(), self._public_key(), algorithms=["RS256"],
                                audience=[RESOURCE, RESOURCE + "/"],
                                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                         "require": ["exp", "aud", "oid"]})
        except jwt.PyJWTError as exc:
            return self._challenge(request, f"AKV10032: Invalid token ({exc}).")
        if claims["exp"] <= self.clock.timestamp():
            return self._challenge(request, "AKV10022: Invalid audience or the token has expired.")
        vault, name, version = match["vault"].lower(), match["name"].lower(), (match["version"] or "").lower()
        readers = {MANAGED_IDENTITY_PRINCIPAL_ID} if self.readers is None else self.readers
        if claims["oid"] not in readers:
            return _error(403, "Forbidden", "Caller is not authorized to perform action on resource. "
                          f"Caller: oid={claims['oid']}; Action: "
                          f"'Microsoft.KeyVault/vaults/secrets/getSecret/action'; Vault: {vault}",
                          inner="ForbiddenByRbac")
        with self._lock:
            versions = list(self._vaults.get(vault, {}).get(name, []))
        found = next((v for v in versions if v.version == version), None) if version else (
            versions[-1] if versions else None)
        if found is None:
            what = f"{name}/{version}" if version else name
            return _error(404, "SecretNotFound", f"A secret with (name/id) {what} was not found in this "
                          "key vault. If you recently deleted this secret you may be able to recover it "
                          "using the correct recovery command.")
        self.reads += 1
        return _json({"value": found.value,
                      "id": f"https://{vault}.vault.azure.net/secrets/{name}/{found.version}",
                      "attributes": {"enabled": True, "created": found.created, "updated": found.created,
                                     "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
                      "tags": {}})

    def _challenge(self, request: Request, message: str) -> Response:
        response = _error(401, "Unauthorized", message)
        response.headers["WWW-Authenticate"] = (f'Bearer authorization="{self._authority(request)}", '
                                                f'resource="{RESOURCE}"')
        return response

    # ---- admin ---------------------------------------------------------------------------------
    def admin(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        parts = [p for p in request.path.split("/") if p][2:]  # after _emulator/keyvault
        if request.method == "GET" and not parts:
            with self._lock:
                body = {v: {n: [x.version for x in versions] for n, versions in s.items()}
                        for v, s in self._vaults.items()}
            return _json(body)(environ, start_response)
        if request.method == "PUT" and len(parts) == 3 and parts[1] == "secrets":
            payload = request.get_json(silent=True)
            if not isinstance(payload, dict) or not isinstance(payload.get("value"), str):
                return _json({"error": "give {\"value\": \"...\"}"}, 400)(environ, start_response)
            version = self.set_secret(parts[0], parts[2], payload["value"])
            return _json({"version": version})(environ, start_response)
        missing = _json({"error": f"no admin route {request.method} {request.path}"}, 404)
        return missing(environ, start_response)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")


def _error(status: int, code: str, message: str, inner: str = "") -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return _json({"error": error}, status)
