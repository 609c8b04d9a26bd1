"""`make run` (`python -m devtools.run`): the connector on http://127.0.0.1:7071, locally (dev tooling).

Not deployed. Starts Azurite (ports 10000-10002, data in `.azurite/`, so `UseDevelopmentStorage=true`
works), the BC + Entra ID emulator on https://127.0.0.1:8443 (unless `--no-emulator` or the settings
name a real BC host), then serves `function_app.app` through `devtools.localhost.LocalHost` until
Ctrl-C / SIGTERM. Settings come from `local.settings.json` (else the example) without overriding the
environment; with the emulator, `BC_API_HOST`, `ENTRA_AUTHORITY_HOST` and the CA bundle point at it.
Whatever was started is stopped in reverse order, also when start-up fails.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from devtools.azurite import Azurite, provision
from devtools.localhost import LocalHost
from devtools.localhost.cli import configure_logging, load_settings, settings_file, stop_signal

ROOT = Path(__file__).resolve().parent.parent
EMULATOR_PORT = 8443
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m devtools.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port of the local host")
    parser.add_argument("--no-emulator", action="store_true",
                        help="do not start the BC + Entra emulator (real BC from the settings)")
    return parser.parse_args(argv)


def uses_real_bc(environ: Mapping[str, str]) -> bool:
    """True when BC_API_HOST names a host other than loopback (the user configured real BC)."""
    host = urlparse(environ.get("BC_API_HOST", "")).hostname
    return bool(host) and host not in LOOPBACK


def point_at_emulator(url: str, ca_bundle: str) -> None:
    """Aim the connector's BC and Entra settings at the emulator and trust its CA (copied to .devdata/)."""
    ca_copy = ROOT / ".devdata" / "emulator-ca.pem"
    ca_copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(ca_bundle, ca_copy)
    os.environ.update({
        "BC_API_HOST": url,
        "ENTRA_AUTHORITY_HOST": url,
        "TLS_CA_BUNDLE": str(ca_copy),
        "REQUESTS_CA_BUNDLE": str(ca_copy),
    })


def main(argv: list[str] | None = None) -> int:
    """Start everything, print the banner, serve until a stop signal; stop in reverse order."""
    args = parse_args(argv)
    configure_logging()
    stop = stop_signal()
    settings = settings_file(ROOT)
    if settings is not None:
        load_settings(settings)
    with contextlib.ExitStack() as started:
        azurite = Azurite(blob_port=10000, queue_port=10001, table_port=10002, location=ROOT / ".azurite")
        started.callback(azurite.stop)
        azurite.start()
        provision(azurite.connection_string)
        emulator_url = ""
        if args.no_emulator or uses_real_bc(os.environ):
            print(f"No emulator; BC_API_HOST={os.environ.get('BC_API_HOST', '(not set)')}")
        else:
            from devtools.emulator import Emulator, EmulatorConfig

            emulator = Emulator(EmulatorConfig(port=EMULATOR_PORT))
            started.callback(emulator.stop)
            emulator.start()
            emulator_url = emulator.url
            point_at_emulator(emulator.url, emulator.ca_bundle)
        sys.path.insert(0, str(ROOT))
        import function_app

        host = LocalHost(function_app.app, host_json=ROOT / "host.json", port=args.port)
        started.callback(host.stop)
        host.start()
        print(f"bc-connector on {host.url}")
        print(f"  health:   {host.url}/api/health")
        print(f"  status:   {host.url}/api/status")
        if emulator_url:
            print(f"  emulator: {emulator_url} (BC + Entra ID, demo data)")
        print(f"  storage:  Azurite on 127.0.0.1:10000-10002 (data in {azurite.location})")
        print("Ctrl-C to stop.", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
