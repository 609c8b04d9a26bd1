"""Exporter set-up, each in a fresh interpreter (OpenTelemetry allows one set-up per process): off by
default, Azure Monitor only with a connection string (and only then imported), console by setting."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Nothing leaves the machine: ingestion at a closed loopback port, no statsbeat, no cloud resource probes.
OFFLINE = {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
           "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel"}
CONNECTION_STRING = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                     "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/")

PROBE = """
import json, logging, sys
from opentelemetry import trace
from connector.settings import load_telemetry_settings
from connector.telemetry import SpanLogFields, configure_telemetry
telemetry = configure_telemetry(load_telemetry_settings())
with telemetry.tracer.start_as_current_span("probe", attributes={"connection": "default"}):
    pass
provider = trace.get_tracer_provider()
getattr(provider, "force_flush", lambda: None)()
handlers = logging.getLogger("connector").handlers
print(json.dumps({
    "provider": type(provider).__name__,
    "distro_loaded": "azure.monitor.opentelemetry" in sys.modules,
    "log_fields": any(isinstance(f, SpanLogFields) for h in handlers for f in h.filters),
}))
"""


def probe(**env: str) -> tuple[dict, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "TELEMETRY_"))}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean | OFFLINE | env,
                          capture_output=True, text=True, timeout=120, check=True)
    *_, last = done.stdout.strip().splitlines()
    return json.loads(last), done.stdout


def test_without_settings_nothing_is_exported_and_the_distro_is_not_imported():
    found, _ = probe()
    assert found == {"provider": "ProxyTracerProvider", "distro_loaded": False, "log_fields": False}


def test_console_exporter_prints_the_spans():
    found, out = probe(TELEMETRY_EXPORTER="console")
    assert found["provider"] == "TracerProvider" and not found["distro_loaded"]
    assert '"name": "probe"' in out and '"connection": "default"' in out


def test_a_connection_string_configures_azure_monitor_with_span_fields_on_logs():
    found, _ = probe(APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION_STRING)
    assert found == {"provider": "TracerProvider", "distro_loaded": True, "log_fields": True}
