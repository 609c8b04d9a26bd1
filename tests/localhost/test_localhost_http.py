"""HTTP triggers through LocalHost: routing, methods, auth levels, errors, context and async."""

from __future__ import annotations

import json
import uuid

import azure.functions as func
import pytest
import requests
import sample_app

from devtools.localhost import ConfigError, LocalHost
from devtools.localhost.http import route_rules


def test_route_rules_expand_optional_and_catch_all_parameters() -> None:
    assert route_rules("api", "items/{id}/{detail?}") == ["/api/items/<id>/<detail>", "/api/items/<id>"]
    assert route_rules("api", "files/{*path}") == ["/api/files/<path:path>"]
    assert route_rules("", "orders/{id:int}") == ["/orders/<id>"]


def test_route_params_query_headers_and_response(make_host) -> None:
    host = make_host()
    r = requests.get(f"{host.url}/api/items/42?x=1", headers={"x-sample": "h"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Echo"] == "1"
    echo = r.json()
    assert echo["route"] == {"id": "42"}
    assert echo["params"] == {"x": "1"}
    assert echo["header"] == "h"
    assert echo["url"] == f"{host.url}/api/items/42?x=1"
    full = requests.post(f"{host.url}/api/items/42/full", data=b"payload", timeout=5).json()
    assert full["method"] == "POST"
    assert full["route"] == {"id": "42", "detail": "full"}
    assert full["body"] == "payload"


def test_unknown_route_is_404_and_wrong_method_405(make_host) -> None:
    host = make_host()
    assert requests.get(f"{host.url}/api/nothing", timeout=5).status_code == 404
    assert requests.get(f"{host.url}/items/42", timeout=5).status_code == 404
    assert requests.put(f"{host.url}/api/items/42", timeout=5).status_code == 405
    assert requests.post(f"{host.url}/api/secure/x", timeout=5).status_code == 405


def test_route_prefix_from_host_json(make_host) -> None:
    host = make_host(http={"routePrefix": ""})
    assert requests.get(f"{host.url}/items/7", timeout=5).json()["route"] == {"id": "7"}
    assert requests.get(f"{host.url}/api/items/7", timeout=5).status_code == 404


def test_keys_not_required_by_default(make_host) -> None:
    host = make_host()
    r = requests.get(f"{host.url}/api/secure/ann", timeout=5)
    assert (r.status_code, r.text) == (200, "hello ann")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert requests.get(f"{host.url}/api/admin/ping", timeout=5).status_code == 204


def test_keys_enforced_when_enabled(make_host) -> None:
    host = make_host(LOCAL_HOST_REQUIRE_KEYS="true", LOCAL_HOST_FUNCTION_KEY="fk", LOCAL_HOST_MASTER_KEY="mk")
    secure, admin = f"{host.url}/api/secure/ann", f"{host.url}/api/admin/ping"
    assert requests.get(secure, timeout=5).status_code == 401
    assert requests.get(secure, params={"code": "wrong"}, timeout=5).status_code == 401
    assert requests.get(secure, params={"code": "fk"}, timeout=5).status_code == 200
    assert requests.get(secure, headers={"x-functions-key": "fk"}, timeout=5).status_code == 200
    assert requests.get(secure, params={"code": "mk"}, timeout=5).status_code == 200
    assert requests.get(admin, params={"code": "fk"}, timeout=5).status_code == 401
    assert requests.get(admin, params={"code": "mk"}, timeout=5).status_code == 204
    assert requests.get(f"{host.url}/api/items/1", timeout=5).status_code == 200
    assert not any(i.function == "secure" for i in host.invocations if i.outcome == "failed")


def test_missing_key_setting_rejects_every_key(make_host) -> None:
    host = make_host(LOCAL_HOST_REQUIRE_KEYS="1")
    assert requests.get(f"{host.url}/api/secure/ann", params={"code": ""}, timeout=5).status_code == 401
    assert requests.get(f"{host.url}/api/secure/ann", params={"code": "x"}, timeout=5).status_code == 401


def test_unhandled_error_is_a_bare_500_and_logged(make_host, caplog: pytest.LogCaptureFixture) -> None:
    host = make_host()
    r = requests.get(f"{host.url}/api/boom", timeout=5)
    assert r.status_code == 500
    assert "secret-detail" not in r.text and "Traceback" not in r.text
    last = host.invocations[-1]
    assert (last.function, last.trigger, last.outcome) == ("boom", "httpTrigger", "failed")
    assert last.error == "RuntimeError: secret-detail"
    assert "secret-detail" in caplog.text


def test_async_function_gets_a_context(make_host) -> None:
    host = make_host()
    r = requests.get(f"{host.url}/api/ctx", timeout=5)
    assert r.status_code == 201
    name, invocation_id = r.text.split()
    assert name == "ctx"
    assert uuid.UUID(invocation_id)


def test_invocations_are_logged_without_bodies(make_host, caplog: pytest.LogCaptureFixture) -> None:
    host = make_host()
    caplog.set_level("INFO", logger="devtools.localhost")
    requests.post(f"{host.url}/api/items/1?code=topsecret", data=b"body-secret", timeout=5)
    assert any(i.function == "items" and i.outcome == "succeeded" for i in host.invocations)
    assert "items (httpTrigger) succeeded" in caplog.text
    assert "topsecret" not in caplog.text and "body-secret" not in caplog.text


def test_unsupported_trigger_is_refused_at_start(tmp_path) -> None:
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="blob", path="c/{name}", connection="AzureWebJobsStorage")
    def on_blob(blob: func.InputStream) -> None: ...

    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    with pytest.raises(ConfigError, match="on_blob.*blobTrigger"):
        LocalHost(app, host_json=tmp_path / "host.json", env={}).start()


def test_missing_setting_is_named(tmp_path, azurite) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    env = {"SampleStorage": azurite.connection_string, "SAMPLE_QUEUE": "q"}
    with pytest.raises(ConfigError, match="SAMPLE_SCHEDULE"):
        LocalHost(sample_app.app, host_json=tmp_path / "host.json", env=env).start()


def test_a_body_over_the_request_body_size_limit_is_413_before_the_function_runs(make_host) -> None:
    host = make_host(FUNCTIONS_REQUEST_BODY_SIZE_LIMIT="1024")
    assert requests.post(f"{host.url}/api/items/1/full", data=b"x" * 1024, timeout=5).status_code == 200
    too_large = requests.post(f"{host.url}/api/items/1/full", data=b"x" * 1025, timeout=5)
    chunked = requests.post(f"{host.url}/api/items/1/full", data=iter([b"x" * 1000, b"x" * 1000]),
                            timeout=5)
    assert (too_large.status_code, chunked.status_code) == (413, 413)
    assert len([i for i in host.invocations if i.function == "items"]) == 1  # the first one only
