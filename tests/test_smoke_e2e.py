"""End-to-end smoke through the local host serving the real app against Azurite."""
import requests


def test_health_answers_without_touching_bc(local_host, emulator):
    host = local_host()
    emulator.clear_requests()
    resp = requests.get(f"{host.url}/api/health", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert emulator.requests == []


def test_webhook_handshake_echoes_the_token_as_plain_text(local_host):
    host = local_host()
    for method in ("GET", "POST"):
        resp = requests.request(method, f"{host.url}/api/webhooks/bc",
                                params={"validationToken": "tok-123 ÄÖ"}, timeout=10)
        assert resp.status_code == 200
        assert resp.text == "tok-123 ÄÖ"
        assert resp.headers["Content-Type"].startswith("text/plain")


def test_function_routes_need_a_key_when_the_host_enforces_keys(local_host):
    host = local_host(LOCAL_HOST_REQUIRE_KEYS="true", LOCAL_HOST_FUNCTION_KEY="k-1")
    assert requests.get(f"{host.url}/api/status", timeout=10).status_code == 401
    assert requests.get(f"{host.url}/api/status", params={"code": "k-1"}, timeout=10).status_code == 200
    assert requests.get(f"{host.url}/api/health", timeout=10).status_code == 200
