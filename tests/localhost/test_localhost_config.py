"""host.json parsing and start-up validation of the local host."""

from __future__ import annotations

import json
import time

import pytest
import sample_app
from conftest import queue

from devtools.localhost import ConfigError, LocalHost
from devtools.localhost.config import HostConfig, QueueOptions


def test_queue_defaults_match_the_host() -> None:
    assert QueueOptions.from_json({}) == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_polling_interval=60.0,
        visibility_timeout=0.0,
        max_dequeue_count=5,
        message_encoding="base64",
    )
    assert QueueOptions.from_json({"batchSize": 4}).new_batch_threshold == 2


@pytest.mark.parametrize(
    "queues", [{"batchSize": 33}, {"messageEncoding": "utf8"}, {"visibilityTimeout": "30"}]
)
def test_bad_queue_options_are_refused(queues: dict) -> None:
    with pytest.raises(ConfigError):
        QueueOptions.from_json(queues)


def test_host_json_sections(tmp_path) -> None:
    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": "/v1/"},
                    "queues": {
                        "maxPollingInterval": "00:00:02",
                        "visibilityTimeout": "00:00:30",
                        "messageEncoding": "none",
                    },
                },
            }
        )
    )
    config = HostConfig.load(path)
    assert config.route_prefix == "v1"
    assert (config.queues.max_polling_interval, config.queues.visibility_timeout) == (2.0, 30.0)
    assert config.queues.message_encoding == "none"


def test_missing_connection_setting_is_named(tmp_path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    env = {"SAMPLE_QUEUE": "q", "SAMPLE_SCHEDULE": "0 0 0 1 1 *"}
    with pytest.raises(ConfigError, match="'SampleStorage'"):
        LocalHost(sample_app.app, host_json=tmp_path / "host.json", env=env).start()


def test_polling_back_off_is_capped_by_max_polling_interval(make_host) -> None:
    host = make_host(queues={"maxPollingInterval": "00:00:00.300"})
    client = queue(host)
    time.sleep(3.5)  # uncapped doubling from 100 ms would poll at ~3.1 s and then ~6.3 s
    sent = time.monotonic()
    client.send_message(json.dumps({"n": 1}))
    host.wait_idle(15)
    ((_, seen_at),) = sample_app.seen.messages
    assert seen_at - sent < 1.2
