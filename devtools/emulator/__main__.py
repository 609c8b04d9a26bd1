"""Run the BC + Entra ID emulator in the foreground: ``python -m devtools.emulator`` (dev tooling).

Prints the URL, CA bundle, tenant, client id and BC base URL; Ctrl-C stops it.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import threading

from .config import EmulatorConfig
from .server import Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m devtools.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 = a free port")
    parser.add_argument("--seed", default="demo", help="seed data set; 'none' = empty companies")
    parser.add_argument("--debounce", type=float, default=30.0,
                        help="webhook debounce in seconds")
    parser.add_argument("--page-size", type=int, default=20000, help="server-driven page size")
    parser.add_argument("--state", metavar="PATH",
                        help="keep the state in this JSON file across restarts (default: memory only)")
    parser.add_argument("--ca-out", metavar="PATH",
                        help="copy the CA certificate (PEM) here, e.g. for REQUESTS_CA_BUNDLE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Start the emulator, print how to reach it and serve until SIGINT/SIGTERM."""
    args = parse_args(argv)
    config = EmulatorConfig(
        host=args.host, port=args.port, seed=None if args.seed.lower() == "none" else args.seed,
        webhook_debounce_seconds=args.debounce, page_size=args.page_size, state_file=args.state,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too when it came in ignored (a background job)
        signal.signal(sig, lambda *_: stop.set())
    emulator = Emulator(config).start()
    try:
        if args.ca_out:
            shutil.copyfile(emulator.ca_bundle, args.ca_out)
        tenant = next(iter(config.tenants))
        client = config.clients[0]
        print(f"BC + Entra ID emulator on {emulator.url}")
        print(f"  CA bundle:   {args.ca_out or emulator.ca_bundle}")
        print(f"  tenant:      {tenant} ({config.tenants[tenant]})")
        print(f"  authority:   {emulator.authority(tenant)}")
        print(f"  client id:   {client.client_id} (secret: {client.client_secret})")
        for env in config.environments:
            print(f"  BC base:     {emulator.bc_base(tenant, env)}")
        print("Ctrl-C to stop.", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
