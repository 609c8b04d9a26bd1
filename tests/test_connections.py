"""Running a job for every connection: one connection's trouble never stops the others."""
import logging

import pytest

from connector.bc.errors import BCError, TokenUnavailable
from connector.connections import for_each_connection, results_or_raise
from connector.settings import load_settings
from connector.webhooks.client_state import MissingClientStateKey

SETTINGS = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s",
                          "BC_CONNECTIONS": "default,emea,apac,latam"})


def job(name: str) -> str:
    if name == "emea":
        raise TokenUnavailable(name, "not-signed-in")
    if name == "apac":
        raise MissingClientStateKey("TOKEN_ENCRYPTION_KEY is not set")
    if name == "latam":
        raise BCError("throttled", status=429, retryable=True)
    return f"done {name}"


def test_every_connection_runs_and_a_connection_without_a_token_is_skipped_with_a_log_line(caplog):
    caplog.set_level(logging.INFO)
    outcomes = for_each_connection(SETTINGS, job, task="sweep")
    assert list(outcomes) == ["default", "apac", "latam"]
    assert outcomes["default"] == "done default"
    assert isinstance(outcomes["apac"], MissingClientStateKey) and isinstance(outcomes["latam"], BCError)
    assert "sweep emea: skipped" in caplog.text and "sweep apac: failed" in caplog.text


def test_a_refused_refresh_is_an_error_when_the_caller_does_not_skip_it():
    outcomes = for_each_connection(SETTINGS, job, skip_states=())
    assert isinstance(outcomes["emea"], TokenUnavailable)


def test_the_first_error_is_raised_after_all_ran_and_results_come_in_connection_order():
    with pytest.raises(MissingClientStateKey):
        results_or_raise(for_each_connection(SETTINGS, job))
    assert results_or_raise({"a": 1, "b": 2}) == [1, 2]
