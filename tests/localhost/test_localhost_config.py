"""host.json parsing and start-up validation of the local host."""

from __future__ import annotations

import json
import threading
import time

import pytest
import sample_app
from conftest import queue

from devtools.localhost import ConfigError, LocalHost
from devtools.localhost.config import HostConfig, QueueOptions, worker_threads


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


class _RecordedWaits(threading.Event):
    """A stop event that records the pauses the poller takes between empty polls."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        return super().wait(timeout)


def test_polling_back_off_is_capped_by_max_polling_interval(make_host) -> None:
    host = make_host(queues={"maxPollingInterval": "00:00:00.300"})
    [listener] = host._queues
    listener._stopping = recorded = _RecordedWaits()
    deadline = time.monotonic() + 30
    while len(recorded.pauses) < 6:  # uncapped doubling would be at 3.2 s by the sixth pause
        assert time.monotonic() < deadline, recorded.pauses
        time.sleep(0.1)
    assert recorded.pauses[-3:] == [0.3, 0.3, 0.3] and max(recorded.pauses) == 0.3
    queue(host).send_message(json.dumps({"n": 1}))
    host.wait_idle(30)
    assert len(sample_app.seen.messages) == 1


@pytest.mark.parametrize(("value", "threads"), [(None, None), ("48", 48), ("1", 1), ("0", None),
                                                ("-3", None), ("many", None), (" 8 ", 8), ("+8", 8)])
def test_worker_threads_reads_the_setting_as_the_python_worker(value, threads) -> None:
    env = {} if value is None else {"PYTHON_THREADPOOL_THREAD_COUNT": value}
    assert worker_threads(env) == threads
