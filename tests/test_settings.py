"""Settings: typed parsing, per-connection prefixes, clear errors, and the catalogue kept in sync."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.settings import (
    SETTINGS,
    Setting,
    SettingsError,
    UnknownConnection,
    declared,
    load_settings,
    read,
    setting,
)
from devtools import settings_files

ROOT = Path(__file__).resolve().parent.parent
BASE = {"BC_TENANT": "lmints.io", "BC_CLIENT_ID": "cid", "BC_CLIENT_SECRET": "s3cret"}


def test_defaults_give_a_default_connection_against_real_bc():
    s = load_settings(BASE)
    conn = s.connection(None)
    assert conn.name == "default"
    assert conn.api_base == "https://api.businesscentral.dynamics.com/v2.0/lmints.io/production/api/v2.0"
    assert conn.authority == "https://login.microsoftonline.com/lmints.io"
    assert conn.pull_item_variants and conn.uses_code_flow
    assert s.storage.connection_string == "UseDevelopmentStorage=true"
    assert s.redirect_uri == "http://127.0.0.1:7071/api/auth/callback"


def test_second_connection_takes_prefixed_values_and_falls_back_to_plain_ones():
    s = load_settings(BASE | {"BC_CONNECTIONS": "default, emea", "EMEA__BC_ENVIRONMENT": "sandbox",
                              "EMEA__PULL_ITEM_VARIANTS": "false"})
    emea = s.connection("emea")
    assert emea.environment == "sandbox" and emea.tenant == "lmints.io"
    assert emea.pull_item_variants is False
    assert s.connection("default").pull_item_variants is True


def test_change_types_default_to_created_and_are_set_per_connection():
    s = load_settings(BASE | {"BC_CONNECTIONS": "default,emea",
                              "SALES_INVOICE_CHANGE_TYPES": "created, updated",
                              "EMEA__ITEM_CHANGE_TYPES": "Created,updated,deleted"})
    default, emea = s.connection("default"), s.connection("emea")
    assert default.item_change_types == {"created"} and default.sales_shipment_change_types == {"created"}
    assert default.sales_invoice_change_types == emea.sales_invoice_change_types == {"created", "updated"}
    assert emea.item_change_types == {"created", "updated", "deleted"}
    assert load_settings(BASE | {"ITEM_CHANGE_TYPES": ""}).connection(None).item_change_types == set()


def test_unknown_connection_names_the_configured_ones():
    s = load_settings(BASE)
    with pytest.raises(UnknownConnection, match="configured: default"):
        s.connection("nope")


@pytest.mark.parametrize("env, message", [
    ({"BC_TENANT": ""}, "BC_TENANT is required"),
    ({"BC_GRANT_TYPE": "password"}, "BC_GRANT_TYPE"),
    ({"PULL_ITEM_VARIANTS": "maybe"}, "PULL_ITEM_VARIANTS must be true or false"),
    ({"ITEM_PULL_PAGE_SIZE": "lots"}, "ITEM_PULL_PAGE_SIZE must be a number"),
    ({"ITEM_CHANGE_TYPES": "created,renamed"}, "ITEM_CHANGE_TYPES is a comma list of created,updated"),
    ({"BC_MAX_CONCURRENCY": "0"}, "BC_MAX_CONCURRENCY must be at least 1"),
    ({"BC_CONNECTIONS": "default,Bad Name"}, "not a valid connection name"),
])
def test_bad_settings_are_named_in_the_error(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(BASE | env)


def test_identity_based_storage_needs_no_connection_string():
    s = load_settings(BASE | {"AzureWebJobsStorage__accountName": "stbc",
                              "AzureWebJobsStorage__clientId": "id"})
    assert s.storage.connection_string == "" and s.storage.account == "stbc"


def test_public_url_comes_from_the_site_hostname_in_azure():
    s = load_settings(BASE | {"WEBSITE_HOSTNAME": "bc-app.azurewebsites.net"})
    assert s.notification_url == "https://bc-app.azurewebsites.net/api/webhooks/bc"


def test_example_settings_file_lists_every_setting():
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert {s.name for s in SETTINGS} <= set(values)
    load_settings(values)  # the example itself is valid


def test_generated_files_are_up_to_date_with_the_declaration():
    stale = [str(p.relative_to(ROOT)) for p in settings_files.stale_files()]
    assert not stale, f"stale, run `make settings`: {stale}"


def test_a_new_setting_changes_every_generated_file():
    new = Setting("NEW_SCHEDULE", "0 0 * * * *", "A new schedule.", host_binding=True, local="0 * * * * *")
    catalogue = [*SETTINGS, new]
    bicep = json.loads(settings_files.bicep_json(catalogue))
    assert bicep["hostBindingSettings"]["NEW_SCHEDULE"] == "0 0 * * * *"
    assert json.loads(settings_files.example_settings(catalogue))["Values"]["NEW_SCHEDULE"] == "0 * * * * *"
    readme = settings_files.readme_with_table((ROOT / "README.md").read_text(),
                                              settings_files.readme_table(catalogue))
    assert "| `NEW_SCHEDULE` | `0 0 * * * *` |  | A new schedule. |" in readme
    assert readme.count(settings_files.TABLE_BEGIN) == readme.count(settings_files.TABLE_END) == 1


@pytest.mark.parametrize("schedule, seconds", [
    ("0 */15 * * * *", 900),
    ("0 7 * * * *", 3600),
    ("0 0 9 * * 1-5", 3 * 86400),  # weekdays at 9: Friday to Monday
    ("00:05:00", 300),
])
def test_alerts_wait_for_the_longest_gap_between_runs_of_a_schedule(schedule, seconds):
    assert settings_files.longest_gap_seconds(schedule) == seconds


def test_readme_without_markers_is_an_error_not_a_silent_skip():
    with pytest.raises(ValueError, match="settings markers"):
        settings_files.readme_with_table("# no table here\n", "| x |\n")


def test_every_binding_expression_is_a_host_binding_setting():
    """`%NAME%` in a trigger is resolved by the Functions host from app settings, so Bicep must deploy it."""
    used = {name for p in (ROOT / "connector").rglob("*.py")
            for name in re.findall(r'"%([A-Z_]+)%"', p.read_text())}
    assert used == {s.name for s in SETTINGS if s.host_binding} - HOST_SETTINGS


# read by the Functions host or the Python worker itself, not through a %NAME%
HOST_SETTINGS = {"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "PYTHON_THREADPOOL_THREAD_COUNT"}


def test_the_host_request_body_limit_is_deployed_and_leaves_room_over_the_receivers_cap():
    [limit] = [s for s in SETTINGS if s.name == "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"]
    [receiver] = [s for s in SETTINGS if s.name == "WEBHOOK_MAX_BODY_BYTES"]
    assert limit.host_binding  # so Bicep deploys it as an app setting
    assert int(receiver.default) < int(limit.default) <= 16 * 1024 * 1024  # far under Azure's 100 MB


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if not re.search(rf"`{re.escape(s.name)}`", readme)]
    assert not missing, f"README lacks settings: {missing}"


def test_only_the_settings_module_reads_the_environment():
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "connector").rglob("*.py")
        if p.name != "settings.py" and re.search(r"os\.environ|os\.getenv", p.read_text())
    ]
    assert offenders == []


def test_one_field_declares_a_setting_with_its_default_validation_and_reader():
    @dataclass(frozen=True, kw_only=True)
    @declared
    class Extra:
        retries: int = setting("EXTRA_RETRIES", "3", "Retries.", minimum=1)
        modes: frozenset[str] = setting("EXTRA_MODES", "a", "Modes.", choices=("a", "b"))
        token: str = setting("EXTRA_TOKEN", "", "A secret.", secret=True)

    assert Extra().retries == 3 and Extra().modes == {"a"}
    extra = read(Extra, {"EXTRA_RETRIES": "5", "EXTRA_MODES": "B, a", "EXTRA_TOKEN": "hush"})
    assert (extra.retries, extra.modes, extra.token) == (5, {"a", "b"}, "hush")
    assert "hush" not in repr(extra)
    with pytest.raises(SettingsError, match="EXTRA_RETRIES must be at least 1"):
        read(Extra, {"EXTRA_RETRIES": "0"})
    with pytest.raises(SettingsError, match="EXTRA_MODES is a comma list of a,b"):
        read(Extra, {"EXTRA_MODES": "c"})


def test_every_declared_setting_is_read_into_the_settings():
    """Each catalogue entry reaches a field: a non-default value of every number changes what is loaded."""
    numbers = [s for s in SETTINGS if s.default and s.default.replace(".", "").isdigit()]
    loaded = load_settings(BASE | {s.name: str(float(s.default or 0) + 1) for s in numbers})
    default = load_settings(BASE)
    assert loaded != default
    for s in numbers:
        changed = load_settings(BASE | {s.name: str(int(float(s.default or 0)) + 1)})
        assert changed != default, f"{s.name} is declared but not read"


EXAMPLE_KEY = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]["TOKEN_ENCRYPTION_KEY"]
REQUIRED = {"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"}


@pytest.mark.parametrize("hosts", [
    {},  # the defaults: login.microsoftonline.com and api.businesscentral.dynamics.com
    {"ENTRA_AUTHORITY_HOST": "https://127.0.0.1:8443"},  # BC still Microsoft's
    {"BC_API_HOST": "https://127.0.0.1:8443", "ENTRA_AUTHORITY_HOST": "https://127.0.0.1:8443",
     "BC_CONNECTIONS": "default,emea", "EMEA__BC_API_HOST": "https://api.businesscentral.dynamics.com"},
])
def test_the_published_example_key_is_refused_for_microsofts_hosts(hosts: dict[str, str]) -> None:
    for keys in (EXAMPLE_KEY, f"{fernet_key()},{EXAMPLE_KEY}"):
        with pytest.raises(SettingsError, match="example key .* is public"):
            load_settings(REQUIRED | hosts | {"TOKEN_ENCRYPTION_KEY": keys})


def test_the_example_key_still_works_against_the_local_emulator() -> None:
    local = {"BC_API_HOST": "https://127.0.0.1:8443", "ENTRA_AUTHORITY_HOST": "https://localhost:8443"}
    assert load_settings(REQUIRED | local | {"TOKEN_ENCRYPTION_KEY": EXAMPLE_KEY}).token_encryption_keys
    assert load_settings(REQUIRED | {"TOKEN_ENCRYPTION_KEY": fernet_key()})  # another key: Microsoft's hosts


def fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
