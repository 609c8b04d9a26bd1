"""`python -m connector connections add|list|remove` against real Azurite (a settings file naming it):
rows written, secrets only as Key Vault references, never printed; a removal marked for the app."""
from __future__ import annotations

import json
from typing import Any

import pytest

from connector.__main__ import main
from connector.connection_table import list_rows
from connector.storage import Storage
from tests.conftest import clear_storage, connector_values

REF = "@Microsoft.KeyVault(SecretUri=https://kv-contoso.vault.azure.net/secrets/contoso-bc/)"


@pytest.fixture
def settings_file(azurite: Any, emulator: Any, tmp_path: Any) -> Any:
    clear_storage(azurite.connection_string)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": connector_values(azurite, emulator)}))
    return path


def storage(path: Any) -> Storage:
    from connector.settings import load_storage_settings

    return Storage(load_storage_settings(json.loads(path.read_text())["Values"]))


def test_add_list_and_remove_a_connection(settings_file, capsys):
    s = ["--settings", str(settings_file)]
    assert main(["connections", "add", "contoso", "--set", "BC_TENANT=contoso.com", "--set",
                 "BC_COMPANY=CRONUS", "--secret-ref", "kv-contoso/contoso-bc", *s]) == 0
    assert "checked with the app settings" in capsys.readouterr().out
    [row] = list_rows(storage(settings_file))
    assert (row["RowKey"], row["BC_TENANT"], row["BC_CLIENT_SECRET"]) == ("contoso", "contoso.com", REF)

    assert main(["connections", "list", "--json", *s]) == 0
    [shown] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown == {"name": "contoso", "state": "active", "invalid": "",
                     "settings": {"BC_CLIENT_SECRET": REF, "BC_COMPANY": "CRONUS",
                                  "BC_TENANT": "contoso.com"}}

    assert main(["connections", "remove", "contoso", *s]) == 0
    assert "marked for removal" in capsys.readouterr().out
    assert main(["connections", "list", *s]) == 0
    assert capsys.readouterr().out.split()[:2] == ["contoso", "removing"]
    assert main(["connections", "remove", "nobody", *s]) == 1
    assert "no connection row 'nobody'" in capsys.readouterr().err


def test_a_plaintext_secret_or_a_bad_value_is_refused_and_nothing_is_written(settings_file, capsys):
    s = ["--settings", str(settings_file)]
    assert main(["connections", "add", "leaky", "--set", "BC_CLIENT_SECRET=hunter2", *s]) == 1
    err = capsys.readouterr().err
    assert "plaintext secret" in err and "hunter2" not in err
    assert main(["connections", "add", "odd", "--set", "BC_GRANT_TYPE=password", *s]) == 1
    assert "BC_GRANT_TYPE must be one of" in capsys.readouterr().err
    assert main(["connections", "add", "nosecret", "--set", "BC_CLIENT_SECRET=", *s]) == 1
    assert "BC_CLIENT_SECRET" in capsys.readouterr().err  # required by the app settings' grant
    assert main(["connections", "add", "x", "--set", "novalue", *s]) == 1
    assert list_rows(storage(settings_file)) == []


def test_a_plaintext_secret_written_past_the_cli_is_listed_without_its_value(settings_file, capsys):
    from connector.connection_table import PARTITION
    from connector.settings import TABLE_CONNECTION_DEFS

    storage(settings_file).table(TABLE_CONNECTION_DEFS).upsert_entity(
        {"PartitionKey": PARTITION, "RowKey": "leaky", "BC_CLIENT_SECRET": "hunter2"})
    assert main(["connections", "list", "--settings", str(settings_file)]) == 0
    out = capsys.readouterr().out
    assert "<plaintext: refused>" in out and "hunter2" not in out


def test_doctor_knows_a_connection_of_the_table(settings_file, capsys):
    from devtools.emulator.seed import CRONUS_UK_ID

    s = ["--settings", str(settings_file)]
    assert main(["connections", "add", "shop", "--set", f"BC_COMPANY={CRONUS_UK_ID}", *s]) == 0
    capsys.readouterr()
    main(["doctor", "--connection", "shop", *s])
    out = capsys.readouterr().out
    assert "unknown connection" not in out and "shop" in out
    assert main(["doctor", "--connection", "nobody", *s]) == 1
    assert "unknown connection 'nobody'" in capsys.readouterr().out
