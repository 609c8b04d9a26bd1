"""BC-provided URLs become safe request targets: a table of hostile links, each with where `requests`
would have sent it as given and where the connector sends it (or that it refuses it).

`where_requests_goes` prepares the link with `requests` and parses it with urllib3, exactly as the
session would before connecting; it shows the threat (the raw link's real destination).
"""
from __future__ import annotations

import pytest
import requests
from urllib3.util import parse_url

from connector.bc.budget import RequestBudget
from connector.bc.client import BCClient
from connector.bc.links import ApiRoot, ForeignLink, resolve_bc_url

BASE = "https://api.businesscentral.dynamics.com/v2.0/contoso.com/production/api/v2.0"
ROOT = "https://api.businesscentral.dynamics.com/v2.0/contoso.com/production/api"
BC = "api.businesscentral.dynamics.com"


def where_requests_goes(url: str) -> tuple[str, int | None, str | None] | None:
    """(host, port, userinfo) `requests` would connect to for `url`; None when it refuses it."""
    try:
        sent = parse_url(requests.Request("GET", url).prepare().url)
    except (requests.RequestException, ValueError):
        return None
    return (sent.host or "", sent.port, sent.auth)


# (link, the host `requests` would reach with it as given: None when requests refuses it as given)
HOSTILE = [
    pytest.param(f"https://attacker.example\\@{BC}/v2.0/contoso.com/production/api/v2.0/items",
                 "attacker.example", id="backslash-then-userinfo"),
    pytest.param(f"https://{BC}\\@attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 BC, id="backslash-in-authority"),  # urllib.parse would say attacker.example
    pytest.param(f"https://{BC}@attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 "attacker.example", id="bc-host-as-userinfo"),
    pytest.param(f"https://user:pw@{BC}/v2.0/contoso.com/production/api/v2.0/items",
                 BC, id="userinfo-on-bc-host"),
    pytest.param("https://attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 "attacker.example", id="other-host"),
    pytest.param(f"https://{BC}.attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 f"{BC}.attacker.example", id="bc-host-as-subdomain"),
    pytest.param("//attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 None, id="protocol-relative-authority"),
    pytest.param("///attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 None, id="triple-slash"),
    pytest.param(f"https://{BC}:8443/v2.0/contoso.com/production/api/v2.0/items",
                 BC, id="other-port"),
    pytest.param(f"http://{BC}/v2.0/contoso.com/production/api/v2.0/items",
                 BC, id="plain-http"),
    pytest.param("https://api.businesscentraI.dynamics.com/v2.0/contoso.com/production/api/v2.0/items",
                 "api.businesscentrai.dynamics.com", id="look-alike-ascii"),
    pytest.param("https://\u0430pi.businesscentral.dynamics.com/v2.0/contoso.com/production/api/v2.0/items",
                 "xn--pi-6kc.businesscentral.dynamics.com", id="idna-cyrillic-a"),
    pytest.param("https://xn--pi-7kc.businesscentral.dynamics.com/v2.0/contoso.com/production/api/v2.0/items",
                 "xn--pi-7kc.businesscentral.dynamics.com", id="idna-punycode"),
    pytest.param("https://api\uff0ebusinesscentral\uff0edynamics\uff0ecom/v2.0/contoso.com/production/api/v2.0/x",
                 None, id="idna-fullwidth-dots"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items\t@attacker.example",
                 BC, id="tab"),
    pytest.param(f" https://{BC}/v2.0/contoso.com/production/api/v2.0/items", BC, id="leading-space"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items\r\nX-Injected: 1",
                 BC, id="crlf"),
    pytest.param(f"https://{BC}\x00.attacker.example/v2.0/contoso.com/production/api/v2.0/items",
                 None, id="nul"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items\u200b", BC,
                 id="zero-width-space"),
    pytest.param(f"https://{BC}/v2.0/other-tenant.com/production/api/v2.0/items", BC,
                 id="other-tenant"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/sandbox/api/v2.0/items", BC, id="other-environment"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/../../other/api/v2.0/items", BC,
                 id="dot-segments"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/%2e%2e/%2E%2E/other/api/items", BC,
                 id="encoded-dot-segments"),
    pytest.param("javascript:alert(1)", "", id="javascript-scheme"),
    pytest.param("file:///v2.0/contoso.com/production/api/v2.0/items", "", id="file-scheme"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize(("link", "raw_destination"), HOSTILE)
def test_a_hostile_link_is_refused_before_anything_is_sent(link, raw_destination) -> None:
    raw = where_requests_goes(link)
    assert (raw[0] if raw else None) == raw_destination  # the threat: where it would have gone as given
    with pytest.raises(ForeignLink) as refused:
        resolve_bc_url(link, BASE, what="next link")
    assert "next link" in str(refused.value) and not refused.value.retryable
    assert "\r" not in str(refused.value) and "\x00" not in str(refused.value)


GOOD = [
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items?$skiptoken=abc",
                 f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items?$skiptoken=abc", id="absolute"),
    pytest.param("HTTPS://API.BusinessCentral.Dynamics.com:443/v2.0/Contoso.com/Production/api/v2.0/items",
                 f"https://{BC}/v2.0/Contoso.com/Production/api/v2.0/items", id="case-and-default-port"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items?$filter=a%20eq%20'%40x'#frag",
                 f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items?$filter=a%20eq%20'%40x'",
                 id="query-kept-fragment-dropped"),
    pytest.param("items2?$skiptoken=1", f"{BASE}/items2?$skiptoken=1", id="relative"),
    pytest.param("/v2.0/contoso.com/production/api/microsoft/runtime/beta/companies(1)/x",
                 f"https://{BC}/v2.0/contoso.com/production/api/microsoft/runtime/beta/companies(1)/x",
                 id="root-relative-other-api"),
    pytest.param(f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items?next=https://attacker.example@x",
                 f"https://{BC}/v2.0/contoso.com/production/api/v2.0/items?next=https://attacker.example@x",
                 id="at-sign-in-query"),
]


@pytest.mark.parametrize(("link", "target"), GOOD)
def test_a_link_on_the_bc_origin_is_rebuilt_on_it(link, target) -> None:
    assert resolve_bc_url(link, BASE, relative_to=f"{BASE}/items", what="next link") == target
    assert where_requests_goes(target)[0] == BC  # and that is where requests connects
    assert where_requests_goes(target)[2] is None  # with no userinfo


def test_the_api_root_is_the_environments_and_ports_are_filled_in() -> None:
    root = ApiRoot.of(BASE)
    assert (root.origin, root.root) == (f"https://{BC}:443", "/v2.0/contoso.com/production/api/")
    local = ApiRoot.of("http://127.0.0.1:8443/v2.0/t/e/api/v2.0")
    assert (local.origin, local.netloc) == ("http://127.0.0.1:8443", "127.0.0.1:8443")
    assert local.resolve("http://127.0.0.1:8443/v2.0/t/e/api/v2.0/x") == "http://127.0.0.1:8443/v2.0/t/e/api/v2.0/x"
    with pytest.raises(ForeignLink):
        local.resolve("http://127.0.0.1/v2.0/t/e/api/v2.0/x")


@pytest.mark.parametrize(("link", "raw_destination"), [p for p in HOSTILE if p.id != "empty"])
def test_the_client_refuses_a_hostile_absolute_url_before_asking_for_a_token(link, raw_destination) -> None:
    asked: list[bool] = []
    client = BCClient(BASE, lambda force: asked.append(force) or "token",
                      budget=RequestBudget(5, 6000, 300.0))
    with pytest.raises(ForeignLink):
        client.get(link)
    assert asked == []


class _Recorder(requests.adapters.BaseAdapter):
    """A transport that records each request and answers 200 `{}`."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs) -> requests.Response:
        self.sent.append(request)
        answer = requests.Response()
        answer.status_code, answer._content, answer.url = 200, b"{}", request.url
        return answer

    def close(self) -> None:
        pass


def test_an_empty_path_is_the_api_root_and_the_token_goes_only_to_the_bc_origin() -> None:
    client = BCClient(BASE, lambda force: "token", budget=RequestBudget(5, 6000, 300.0))
    recorder = _Recorder()
    client.session.mount("https://", recorder)
    client.session.mount("http://", recorder)
    assert client.get("") == {}
    [sent] = recorder.sent
    assert sent.url == f"{BASE}/"  # a path, not a link: the API root itself
    assert where_requests_goes(sent.url) == (BC, None, None)
    assert sent.headers["Authorization"] == "Bearer token"
