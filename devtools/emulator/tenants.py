"""Many tenants at once (dev tooling): `POST /_emulator/tenants` creates tenants, their environments
and companies, their app registrations (principals) and their own limits in one call, for the
scale bench (`bench/scale.py`) and tests.

    {"tenants": [{"domain": "t001.example", "id"?: "<guid>",
                  "environments": {"production": ["Company A", ...], "sandbox": [...]},
                  "clients"?: [{"client_id": "...", "client_secret": "..."}],
                  "limits"?: {"rate_limit": 6000, "max_concurrent": 5, "max_queued": 95,
                              "max_subscriptions": 200}}],
     "seed"?: "demo" | null}

Each tenant is its own Entra tenant (its GUID issues its tokens) and BC tenant: a company lives in one
environment of one tenant, as in BC online, where each customer's tenant has up to the environments
its licence allows and each environment its companies. A client listed under a tenant is an app
registration consented in that tenant, so its client-credentials token names a service principal of
that tenant (a principal of its own, counted by BC on its own: bc-api.md §8). `limits` override the
emulator's per-principal limits (rate, concurrency, queue) for principals of that tenant and the
subscription cap of its environments (BC's 200 per environment, bc-api.md §5); the rest keep the
emulator's. `seed: "demo"` fills each new company with the demo master data (items, customers,
documents), else companies are empty. The answer lists every company with its id.
"""
from __future__ import annotations

import uuid
from typing import Any

from .config import ClientApp, EmulatorConfig
from .seed import seed_company
from .store import Store

TENANT_LIMITS = {"rate_limit": int, "max_concurrent": int, "max_queued": int, "max_subscriptions": int}
_NS = uuid.UUID("2f1c9a4e-7d3b-4c8a-9e6f-1a2b3c4d5e6f")


def create_tenants(config: EmulatorConfig, store: Store, body: dict[str, Any]) -> dict[str, Any]:
    """Create what `body` declares (see the module docstring); ValueError naming a bad field."""
    tenants = body.get("tenants")
    if not isinstance(tenants, list) or not tenants:
        raise ValueError("expected {'tenants': [...]} with at least one tenant")
    seed = body.get("seed")
    if seed not in ("demo", None):
        raise ValueError(f"unknown seed {seed!r}; known: 'demo' or null")
    checked = [_checked(t, i) for i, t in enumerate(tenants)]
    created = []
    for domain, tenant_id, environments, clients, limits in checked:
        config.tenants[domain] = tenant_id
        if limits:
            config.tenant_limits[tenant_id] = limits
        for client_id, secret in clients:
            if not any(c.client_id == client_id and c.tenant == domain for c in config.clients):
                config.clients.append(ClientApp(client_id, secret, domain))
        answer: dict[str, Any] = {"domain": domain, "id": tenant_id, "environments": {}}
        for env, names in environments.items():
            store.environment(tenant_id, env)
            companies = []
            for name in names:
                company_id = str(uuid.uuid5(_NS, f"{tenant_id}:{env}:{name}"))
                company = store.add_company(tenant_id, env, name, company_id)
                if seed == "demo":
                    with store.transaction():
                        seed_company(store, company)
                companies.append({"id": company.id, "name": name})
            answer["environments"][env] = companies
        created.append(answer)
    return {"tenants": created}


def _checked(tenant: Any, index: int) -> tuple[str, str, dict[str, list[str]], list[tuple[str, str]],
                                               dict[str, int]]:
    where = f"tenants[{index}]"
    if not isinstance(tenant, dict):
        raise ValueError(f"{where}: expected an object")
    domain = tenant.get("domain")
    if not isinstance(domain, str) or not domain.strip():
        raise ValueError(f"{where}.domain: a tenant domain is required")
    tenant_id = str(tenant.get("id") or uuid.uuid5(_NS, domain.lower())).lower()
    uuid.UUID(tenant_id)  # ValueError when not a GUID
    environments = tenant.get("environments") or {}
    if not isinstance(environments, dict) or not all(
            isinstance(e, str) and isinstance(n, list) and all(isinstance(c, str) and c for c in n)
            for e, n in environments.items()):
        raise ValueError(f"{where}.environments: expected {{environment: [company names]}}")
    clients = []
    for c in tenant.get("clients") or []:
        if not (isinstance(c, dict) and isinstance(c.get("client_id"), str)
                and isinstance(c.get("client_secret"), str)):
            raise ValueError(f"{where}.clients: expected [{{client_id, client_secret}}]")
        clients.append((c["client_id"], c["client_secret"]))
    limits = tenant.get("limits") or {}
    unknown = set(limits) - set(TENANT_LIMITS)
    if unknown:
        raise ValueError(f"{where}.limits: unknown {sorted(unknown)}; choose from {sorted(TENANT_LIMITS)}")
    return (domain.lower(), tenant_id, {e.lower(): n for e, n in environments.items()}, clients,
            {k: TENANT_LIMITS[k](v) for k, v in limits.items()})
