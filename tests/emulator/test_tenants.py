"""`POST /_emulator/tenants`: many tenants in one call, each with its environments, companies,
app registrations (principals) and limits, served through the real Entra and BC endpoints."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

SCOPE = "https://api.businesscentral.dynamics.com/.default"


def admin(emu: Any, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{emu.url}/_emulator/tenants", json=body, verify=emu.ca_bundle, timeout=30)


def token(emu: Any, tenant: str, client_id: str, secret: str) -> str:
    resp = requests.post(f"{emu.authority(tenant)}/oauth2/v2.0/token", verify=emu.ca_bundle, timeout=10,
                         data={"grant_type": "client_credentials", "client_id": client_id,
                               "client_secret": secret, "scope": SCOPE})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def bc(emu: Any, bearer: str, path: str, method: str = "GET", **kw: Any) -> requests.Response:
    return requests.request(method, f"{emu.url}/v2.0/{path}", headers={"Authorization": f"Bearer {bearer}"},
                            verify=emu.ca_bundle, timeout=10, **kw)


def tenants(n: int, **extra: Any) -> dict[str, Any]:
    return {"tenants": [{"domain": f"t{i}.example",
                         "environments": {"production": ["A", "B"], "sandbox": ["C"]},
                         "clients": [{"client_id": f"app-{i}", "client_secret": f"s-{i}"}], **extra}
                        for i in range(n)], "seed": "demo"}


@pytest.fixture
def emu(make_emulator: Callable[..., Any]) -> Any:
    return make_emulator(seed=None)


def test_each_tenant_has_its_own_environments_companies_and_principal(emu):
    answer = admin(emu, tenants(3)).json()["tenants"]
    assert [t["domain"] for t in answer] == ["t0.example", "t1.example", "t2.example"]
    assert [c["name"] for c in answer[1]["environments"]["production"]] == ["A", "B"]
    bearer = token(emu, "t1.example", "app-1", "s-1")
    listed = bc(emu, bearer, "t1.example/production/api/v2.0/companies").json()["value"]
    assert {c["id"] for c in listed} == {c["id"] for c in answer[1]["environments"]["production"]}
    company = answer[1]["environments"]["sandbox"][0]["id"]
    items = bc(emu, bearer, f"t1.example/sandbox/api/v2.0/companies({company})/items").json()["value"]
    assert items  # seeded with the demo master data
    # an app registered in another tenant is not consented here
    resp = requests.post(f"{emu.authority('t1.example')}/oauth2/v2.0/token", verify=emu.ca_bundle,
                         timeout=10, data={"grant_type": "client_credentials", "client_id": "app-0",
                               "client_secret": "s-0", "scope": SCOPE})
    assert resp.status_code in (400, 401)
    # the same names in another tenant are other companies
    first, second = (t["environments"]["production"][0]["id"] for t in answer[:2])
    assert first != second


def test_a_tenants_own_limits_apply_to_its_principals_only(emu):
    admin(emu, {"tenants": [{"domain": "small.example", "environments": {"production": ["A"]},
                             "clients": [{"client_id": "app-s", "client_secret": "s"}],
                             "limits": {"rate_limit": 2}},
                            {"domain": "big.example", "environments": {"production": ["A"]},
                             "clients": [{"client_id": "app-b", "client_secret": "b"}]}]})
    small = token(emu, "small.example", "app-s", "s")
    big = token(emu, "big.example", "app-b", "b")
    assert [bc(emu, small, "small.example/production/api/v2.0/companies").status_code
            for _ in range(3)] == [200, 200, 429]
    assert {bc(emu, big, "big.example/production/api/v2.0/companies").status_code for _ in range(5)} == {200}


def test_a_tenants_subscription_cap_is_its_own(emu):
    answer = admin(emu, {"tenants": [{"domain": "cap.example", "environments": {"production": ["A"]},
                                      "clients": [{"client_id": "app-c", "client_secret": "c"}],
                                      "limits": {"max_subscriptions": 0}}]}).json()
    company = answer["tenants"][0]["environments"]["production"][0]["id"]
    bearer = token(emu, "cap.example", "app-c", "c")
    resp = bc(emu, bearer, "cap.example/production/api/v2.0/subscriptions", "POST",
              json={"notificationUrl": "https://example.invalid/hook",
                    "resource": f"/api/v2.0/companies({company})/items", "clientState": "x"})
    assert resp.status_code == 400 and "maximum number of subscriptions (0)" in resp.text


@pytest.mark.parametrize("body, problem", [
    ({}, "at least one tenant"),
    ({"tenants": [{"environments": {}}]}, "domain"),
    ({"tenants": [{"domain": "x", "environments": {"production": [1]}}]}, "environments"),
    ({"tenants": [{"domain": "x", "limits": {"speed": 1}}]}, "unknown"),
    ({"tenants": [{"domain": "x"}], "seed": "big"}, "seed"),
])
def test_bad_bodies_are_refused_with_the_field(emu, body, problem):
    resp = admin(emu, body)
    assert resp.status_code == 400 and problem in resp.text
