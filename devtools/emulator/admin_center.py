"""The Business Central Admin Center API of the emulator (dev tooling): environments and their
operations log, and admin routes that perform a copy, a point-in-time restore, a rename or an update.

Microsoft Learn, *Business Central Admin Center API*
(`dev-itpro/administration/administration-center-api_environments.md`):
`GET /admin/v2.28/applications/BusinessCentral/environments` (friendlyName, type, name, countryCode,
applicationFamily, aadTenantId, applicationVersion, status, ...) and the operations of an environment
(`GET /admin/v2.28/applications/BusinessCentral/environments/{name}/operations`, all of them:
`GET /admin/v2.28/environments/operations`) with id, type, status, environmentName, createdOn,
startedOn, completedOn, createdBy, errorMessage and parameters. A point-in-time restore really rolls
the environment's data back (`Store.rewind`) and, like a copy into it, leaves no webhook subscription.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from devtools.emulator.odata import format_datetime

if TYPE_CHECKING:
    from devtools.emulator.bc_backend import BCBackend

API_VERSION = "v2.28"
FAMILY = "BusinessCentral"
ADMIN_ROLE = "AdminCenter.ReadWrite.All"
CONTROL_PREFIX = "/_emulator/admin-center/"


class AdminCenter:
    """Environments and the operations log of every tenant of the BC emulator."""

    def __init__(self, api: BCBackend) -> None:
        self.api = api
        self.operations: list[dict[str, Any]] = []
        self.versions: dict[tuple[str, str], str] = {}
        self.renamed: dict[tuple[str, str], str] = {}  # (tenant, old name) -> new name

    # ---- the API (bearer token of the tenant) ---------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        header = request.headers.get("Authorization", "")
        try:
            bearer = header.lower().startswith("bearer ")
            claims = self.api.validate_token(header[7:].strip()) if bearer else None
        except Exception:  # noqa: BLE001 - any invalid token is a 401, as the API answers
            claims = None
        if claims is None:
            return _json({"code": "Unauthorized", "message": "The token is missing or invalid."}, 401)(
                environ, start_response)
        if not self.api.config.admin_center_consented:
            return _json({"code": "Forbidden", "message": f"The app lacks {ADMIN_ROLE}."}, 403)(
                environ, start_response)
        tenant = str(claims.get("tid", "")).lower()
        parts = [p for p in request.path.split("/") if p]
        response = _json({"code": "NotFound", "message": f"No route {request.path}."}, 404)
        if request.method == "GET" and parts[:2] == ["admin", API_VERSION]:
            rest = parts[2:]
            if rest == ["applications", FAMILY, "environments"]:
                response = _json({"value": self.environments(tenant)})
            elif rest[:3] == ["applications", FAMILY, "environments"] and rest[4:] == ["operations"]:
                response = _json({"value": [o for o in self.operations if o["aadTenantId"] == tenant
                                            and o["environmentName"] == rest[3].lower()]})
            elif rest == ["environments", "operations"]:
                response = _json({"value": [o for o in self.operations if o["aadTenantId"] == tenant]})
        return response(environ, start_response)

    def environments(self, tenant: str) -> list[dict[str, Any]]:
        return [{
            "friendlyName": env.name, "type": "Production" if env.name == "production" else "Sandbox",
            "name": env.name, "countryCode": "GB", "applicationFamily": FAMILY, "aadTenantId": tenant,
            "applicationVersion": self.versions.get((tenant, env.name), "27.0.38460.41000"),
            "status": "Active",
        } for (t, _), env in sorted(self.api.store.environments.items()) if t == tenant]

    # ---- what an administrator does (loopback admin routes) -------------------------------------
    def control(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """`POST /_emulator/admin-center/{tenant}/{environment}/restore {"pointInTime": iso}`, `/copy
        {"source": env}`, `/rename {"newName": n}`, `/update {"version": v}`."""
        request = Request(environ)
        parts = request.path[len(CONTROL_PREFIX):].strip("/").split("/")
        body = request.get_json(silent=True) or {}
        try:
            tenant_key, env_name, action = parts
            tenant = self.api.config.tenants.get(tenant_key.lower(), tenant_key).lower()
            operation = getattr(self, f"_{action}")(tenant, env_name.lower(), body)
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)(environ, start_response)
        return _json(operation, 201)(environ, start_response)

    def _log(self, tenant: str, env: str, kind: str, parameters: dict[str, Any]) -> dict[str, Any]:
        now = format_datetime(self.api.clock.now())
        operation = {"id": str(uuid.uuid4()), "type": kind, "status": "Succeeded", "aadTenantId": tenant,
                     "environmentName": env, "productFamily": FAMILY, "createdOn": now, "startedOn": now,
                     "completedOn": now, "createdBy": "admin@lmints.io", "errorMessage": "",
                     "parameters": parameters}
        self.operations.append(operation)
        return operation

    def _drop_subscriptions(self, tenant: str, env: str) -> None:
        for sub in self.api.webhooks.in_environment(tenant, env):
            self.api.webhooks.delete(sub.id)

    def _restore(self, tenant: str, env: str, body: dict[str, Any]) -> dict[str, Any]:
        point = datetime.fromisoformat(str(body["pointInTime"]).replace("Z", "+00:00"))
        if self.api.store.find_environment(tenant, env) is None:
            raise KeyError(env)
        undone = self.api.store.rewind(tenant, env, point)
        self._drop_subscriptions(tenant, env)
        return self._log(tenant, env, "pitRestore", {"pointInTime": format_datetime(point),
                                                     "sourceEnvironmentName": env, "undoneWrites": undone})

    def _copy(self, tenant: str, env: str, body: dict[str, Any]) -> dict[str, Any]:
        source = str(body["source"]).lower()
        if self.api.store.find_environment(tenant, source) is None:
            raise KeyError(source)
        self._drop_subscriptions(tenant, env)
        return self._log(tenant, env, "copy", {"sourceEnvironmentName": source,
                                               "destinationEnvironmentName": env})

    def _rename(self, tenant: str, env: str, body: dict[str, Any]) -> dict[str, Any]:
        new = str(body["newName"]).lower()
        store = self.api.store
        with store.lock:
            environment = store.environments.pop((tenant, env))
            environment.name = new
            for company in environment.companies.values():
                company.environment = new
            store.environments[(tenant, new)] = environment
        return self._log(tenant, env, "environmentRename", {"oldEnvironmentName": env,
                                                            "newEnvironmentName": new})

    def _update(self, tenant: str, env: str, body: dict[str, Any]) -> dict[str, Any]:
        version = str(body["version"])
        old = self.versions.get((tenant, env), "27.0.38460.41000")
        self.versions[(tenant, env)] = version
        return self._log(tenant, env, "update", {"sourceVersion": old, "targetVersion": version})


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
