"""In-memory OpenTelemetry for the telemetry tests: the SDK providers, installed once per process
(OpenTelemetry allows one global provider), read and emptied per test."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_installed: tuple[InMemorySpanExporter, InMemoryMetricReader] | None = None


def _install() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    global _installed
    if _installed is None:
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        delta = AggregationTemporality.DELTA
        reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _installed = spans, reader
    return _installed


@dataclass
class Recorded:
    """What the connector exported since the test began."""

    span_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name → (attributes, value) since the last call (counters: sums; histograms: the
        point; gauges: the value)."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in (data.resource_metrics if data else []):
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point
                        out.setdefault(metric.name, []).append((dict(point.attributes), value))
        return out

    def total(self, points: Mapping[str, list[tuple[dict[str, Any], Any]]], name: str,
              **attributes: str) -> float:
        return sum(v for attrs, v in points.get(name, [])
                   if all(attrs.get(k) == want for k, want in attributes.items()))


@pytest.fixture
def otel() -> Iterator[Recorded]:
    spans, reader = _install()
    recorded = Recorded(spans, reader)
    recorded.points()  # drop what earlier tests left
    spans.clear()
    yield recorded
    spans.clear()
