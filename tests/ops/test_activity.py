"""The status page's hourly counts: the telemetry hooks count per connection and hour, each instance
writes its own row, the status report sums them."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connector.ops.activity import ActivityRecorder, read_activity


def test_two_instances_counts_are_summed_per_hour_and_lag_keeps_its_maximum(runtime: Any) -> None:
    now = datetime.now(UTC)
    first, second = (ActivityRecorder(runtime.storage, instance=i) for i in ("a", "b"))
    for recorder, n in ((first, 3), (second, 4)):
        for _ in range(n):
            recorder.add("default", "orders.created")
        recorder.add("default", "lag.max", float(n))
        recorder.add("other", "events")
        recorder.flush()
    hours = read_activity(runtime.storage, "default", now)
    assert len(hours) == 24 and hours[-1]["orders.created"] == 7 and hours[-1]["lag.max"] == 4
    assert sum(h.get("events", 0) for h in hours) == 0  # another connection's


def test_queued_events_and_bc_requests_are_counted_for_the_status_page(runtime: Any) -> None:
    runtime.bc().get("companies")
    runtime.events.publish("bc-items", [{"specversion": "1.0", "id": "1", "type": "bc.item.created",
                                         "source": "bc-connector/default/c1", "subject": "i1",
                                         "time": datetime.now(UTC).isoformat(), "data": {}}])
    runtime.activity.flush()
    [hour] = read_activity(runtime.storage, "default", datetime.now(UTC))[-1:]
    assert hour["bc.requests"] >= 1 and hour["events"] == 1 and hour["lag.count"] == 1


def test_a_status_page_flushes_only_its_own_connections_counts(runtime: Any) -> None:
    now = datetime.now(UTC)
    recorder = ActivityRecorder(runtime.storage, instance="a", clock=lambda: now)
    for name in ("c1", "c2", "c3"):
        recorder.add(name, "events")

    def saved() -> list[float]:
        return [sum(h.get("events", 0) for h in read_activity(runtime.storage, n, now))
                for n in ("c1", "c2", "c3")]

    recorder.flush({"c2"})
    assert saved() == [0, 1, 0]
    recorder.flush()  # the others still go at the next full flush
    assert saved() == [1, 1, 1]
