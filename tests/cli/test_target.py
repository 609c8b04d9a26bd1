"""Where a CLI command points (connector/cli/target.py): a settings file (Azure's identity-based
storage too), an Azure account signed in as you, the running `make run`, or the environment."""
import argparse
import json
import os

import pytest

from connector.cli.errors import CLIError
from connector.cli.local_run import LocalRun, read_run, remove_run, write_run
from connector.cli.target import queue_endpoint, resolve


def args(**given) -> argparse.Namespace:
    base = {"settings": None, "account": None, "url": None, "key": None, "data_dir": None}
    return argparse.Namespace(**(base | given))


def test_a_settings_file_with_an_account_name_signs_in_and_names_the_app(tmp_path):
    path = tmp_path / "azure.settings.json"
    path.write_text(json.dumps({"Values": {"AzureWebJobsStorage__accountName": "stbcprod",
                                           "PUBLIC_BASE_URL": "https://func-bc.azurewebsites.net/"}}))
    target = resolve(args(settings=path))
    assert target.storage_settings.account == "stbcprod" and not target.storage_settings.connection_string
    assert queue_endpoint(target.storage_settings) == ("stbcprod.queue.core.windows.net", 443)
    assert target.host_url == "https://func-bc.azurewebsites.net" and not target.local


def test_an_account_is_reached_as_you_and_the_app_url_comes_from_the_option():
    target = resolve(args(account="stbcprod", url="https://func-bc.azurewebsites.net", key="k"))
    assert queue_endpoint(target.storage_settings) == ("stbcprod.queue.core.windows.net", 443)
    assert (target.host_url, target.host_key) == ("https://func-bc.azurewebsites.net", "k")


def test_the_running_make_run_is_found_through_its_run_file_and_a_dead_one_is_not(tmp_path):
    run = LocalRun(pid=os.getpid(), host_url="http://127.0.0.1:7072", public_url="http://127.0.0.1:7072",
                   storage="UseDevelopmentStorage=true", emulator_url="https://127.0.0.1:8443")
    write_run(tmp_path, run)
    assert read_run(tmp_path) == run
    target = resolve(args(data_dir=tmp_path))
    assert target.local and target.host_url == "http://127.0.0.1:7072"
    assert queue_endpoint(target.storage_settings) == ("127.0.0.1", 10001)

    write_run(tmp_path, LocalRun(pid=2**22 + 12345, host_url="http://127.0.0.1:7072", public_url="",
                                 storage="UseDevelopmentStorage=true"))
    gone = resolve(args(data_dir=tmp_path))
    assert not gone.local and "is gone" in gone.source
    remove_run(tmp_path, 2**22 + 12345)
    assert read_run(tmp_path) is None


def test_a_settings_file_without_values_is_one_clear_error(tmp_path):
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0"}))
    with pytest.raises(CLIError, match="no \"Values\" object"):
        resolve(args(settings=path))
