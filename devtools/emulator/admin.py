"""Admin API of the emulator under `/_emulator/` (dev tooling; loopback only, no token).

* ``GET /_emulator/health``
* ``GET /_emulator/clock``; ``POST`` ``{"advance_seconds": n}`` or ``{"set": "<iso>"}``
* ``GET /_emulator/faults``; ``POST`` replaces the fault configuration; ``DELETE`` clears it
* ``GET /_emulator/requests`` (the BC request log, each with `principal` and `in_flight`); ``DELETE``
  clears it
* ``GET /_emulator/limits`` (the per-principal limits and what is in flight now); ``POST`` changes
  limits, e.g. ``{"reject_over_concurrency": true}``
* ``POST /_emulator/entra/revoke`` ``{"client_id"?, "user"?}``
* ``GET/POST /_emulator/entra/signin`` ``{"user"?, "deny"?: bool | "description"}``
* ``POST /_emulator/tenants`` many tenants at once: environments, companies, app registrations and
  limits of each (`tenants.py`)
* ``/_emulator/bc/...`` is forwarded to the BC API emulator's admin app.
* ``PUT /_emulator/keyvault/<vault>/secrets/<name>`` ``{"value"}`` adds a secret version; ``GET
  /_emulator/keyvault`` lists vaults, secrets and versions (`keyvault.py`)
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from werkzeug.wrappers import Request, Response

from .limits import logged_request_json

if TYPE_CHECKING:
    from .clock import Clock
    from .config import EmulatorConfig
    from .entra import Entra
    from .limits import Faults, LoggedRequest


class EmulatorParts(Protocol):
    """The parts of the emulator the admin API works on (the `Emulator` has them; the admin API does
    not need the server)."""

    config: EmulatorConfig
    clock: Clock
    faults: Faults
    entra: Entra
    bc: Any  # the BC API app (`bc_api.BCApi`), or None
    keyvault: Any  # the Key Vault secrets endpoint (`keyvault.KeyVault`)
    url: str  # where it listens (`https://host:port`), once started

    @property
    def requests(self) -> list[LoggedRequest]: ...

    def clear_requests(self) -> None: ...

    def in_flight(self) -> dict[str, int]: ...

_LIMITS: dict[str, Callable[[Any], Any]] = {
    "rate_limit": int, "rate_window_seconds": float, "max_concurrent": int, "max_queued": int,
    "queue_timeout_seconds": float, "reject_over_concurrency": bool,
}
_DEFAULT_DENIAL = "The user or administrator has not consented to use the application."


class AdminApp:
    """WSGI app for `/_emulator/...`."""

    def __init__(self, emulator: EmulatorParts) -> None:
        self.emulator = emulator

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REMOTE_ADDR") not in ("127.0.0.1", "::1"):
            return _json({"error": "the emulator admin API is loopback-only"}, 403)(
                environ, start_response)
        path = environ.get("PATH_INFO", "")
        if path == "/_emulator/bc" or path.startswith("/_emulator/bc/"):
            bc_admin = getattr(self.emulator.bc, "admin_app", None)
            if bc_admin is None:
                return _json({"error": "no BC API emulator"}, 404)(environ, start_response)
            return bc_admin(environ, start_response)
        if path == "/_emulator/keyvault" or path.startswith("/_emulator/keyvault/"):
            return self.emulator.keyvault.admin(environ, start_response)
        if path.startswith("/_emulator/admin-center/") and hasattr(self.emulator.bc, "admin_center"):
            return self.emulator.bc.admin_center.control(environ, start_response)
        request = Request(environ)
        handler = self._routes().get((request.method, path.rstrip("/")))
        if handler is None:
            response = _json({"error": f"no admin route {request.method} {path}"}, 404)
        else:
            try:
                body = request.get_json(silent=True) if request.method == "POST" else None
                response = handler(body if isinstance(body, dict) else {})
            except (ValueError, TypeError, KeyError) as exc:
                response = _json({"error": str(exc)}, 400)
        return response(environ, start_response)

    def _routes(self) -> dict[tuple[str, str], Callable[[dict], Response]]:
        return {
            ("GET", "/_emulator/health"): self._health,
            ("GET", "/_emulator/clock"): self._clock,
            ("POST", "/_emulator/clock"): self._set_clock,
            ("GET", "/_emulator/faults"): self._faults,
            ("POST", "/_emulator/faults"): self._set_faults,
            ("DELETE", "/_emulator/faults"): self._clear_faults,
            ("GET", "/_emulator/requests"): self._requests,
            ("DELETE", "/_emulator/requests"): self._clear_requests,
            ("GET", "/_emulator/limits"): self._limits,
            ("POST", "/_emulator/limits"): self._set_limits,
            ("POST", "/_emulator/entra/revoke"): self._revoke,
            ("GET", "/_emulator/entra/signin"): self._signin,
            ("POST", "/_emulator/entra/signin"): self._set_signin,
            ("POST", "/_emulator/tenants"): self._tenants,
        }

    def _health(self, _: dict) -> Response:
        emu = self.emulator
        return _json({"status": "ok", "url": emu.url, "now": emu.clock.now().isoformat(),
                      "tenants": emu.config.tenants, "bc": emu.bc is not None})

    def _clock(self, _: dict) -> Response:
        return _json({"now": self.emulator.clock.now().isoformat()})

    def _set_clock(self, body: dict) -> Response:
        if "advance_seconds" in body:
            self.emulator.clock.advance(float(body["advance_seconds"]))
        elif "set" in body:
            self.emulator.clock.set(datetime.fromisoformat(str(body["set"])))
        else:
            raise ValueError("expected {'advance_seconds': n} or {'set': iso}")
        return self._clock(body)

    def _faults(self, _: dict) -> Response:
        return _json(self.emulator.faults.to_dict())

    def _set_faults(self, body: dict) -> Response:
        self.emulator.faults.configure(body)
        return self._faults(body)

    def _clear_faults(self, _: dict) -> Response:
        self.emulator.faults.clear()
        return self._faults({})

    def _requests(self, _: dict) -> Response:
        return _json([logged_request_json(e) for e in self.emulator.requests])

    def _clear_requests(self, _: dict) -> Response:
        self.emulator.clear_requests()
        return _json({"cleared": True})

    def _limits(self, _: dict) -> Response:
        config = self.emulator.config
        return _json({name: getattr(config, name) for name in _LIMITS}
                     | {"in_flight": self.emulator.in_flight()})

    def _set_limits(self, body: dict) -> Response:
        unknown = set(body) - set(_LIMITS)
        if unknown:
            raise ValueError(f"unknown limits: {sorted(unknown)}; choose from {sorted(_LIMITS)}")
        values = {name: _LIMITS[name](body[name]) for name in body}
        if not isinstance(body.get("reject_over_concurrency", False), bool):
            raise ValueError("'reject_over_concurrency' must be true or false")
        for name, value in values.items():
            setattr(self.emulator.config, name, value)
        return self._limits(body)

    def _tenants(self, body: dict) -> Response:
        from .tenants import create_tenants

        if self.emulator.bc is None:
            return _json({"error": "no BC API emulator"}, 404)
        return _json(create_tenants(self.emulator.config, self.emulator.bc.store, body))

    def _revoke(self, body: dict) -> Response:
        count = self.emulator.entra.revoke_refresh_tokens(body.get("client_id"), body.get("user"))
        return _json({"revoked": count})

    def _signin(self, _: dict) -> Response:
        entra = self.emulator.entra
        return _json({"user": entra.signin_user, "deny": entra.deny_consent})

    def _set_signin(self, body: dict) -> Response:
        entra = self.emulator.entra
        if "user" in body:
            entra.signin_user = str(body["user"])
        if "deny" in body:
            deny = body["deny"]
            entra.deny_consent = (deny if isinstance(deny, str) else _DEFAULT_DENIAL) if deny else None
        return self._signin(body)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")
