"""`client-request-id` on every BC request: our trace id as a GUID, so BC's telemetry (which files it
as the operation id) joins our spans; the emulator logs it as BC would receive it."""
from __future__ import annotations

import uuid
from typing import Any

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_every_bc_request_of_a_trace_carries_its_trace_id_as_client_request_id(otel: Any, runtime: Any,
                                                                               emulator: Any) -> None:
    runtime.bc().get("companies")  # token and first contact
    emulator.clear_requests()
    with runtime.telemetry.consume("test", f"00-{TRACE_ID}-00f067aa0ba902b7-01"):
        runtime.bc().get("companies")
        runtime.bc().get("companies")
    logged = {r.client_request_id for r in emulator.requests}
    assert logged == {str(uuid.UUID(TRACE_ID))}
    spans = [s for s in otel.spans() if s.name.startswith("BC GET")]
    assert spans and all(s.attributes["bc.client_request_id"] == str(uuid.UUID(TRACE_ID)) for s in spans[-2:])


def test_a_bc_request_outside_any_trace_still_carries_a_client_request_id(runtime: Any,
                                                                          emulator: Any) -> None:
    runtime.bc().get("companies")
    emulator.clear_requests()
    runtime.bc().get("companies")
    (request,) = emulator.requests
    assert uuid.UUID(request.client_request_id)
