"""`python -m local.cobalt_sandbox --port 8090`: run the Cobalt sandbox in the foreground on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from local.cobalt_sandbox.server import DEFAULT_SEED_FILE, CobaltSandbox, FaultSettings, SandboxConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cobalt-sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one and prints it")
    parser.add_argument("--seed-file", type=Path, default=DEFAULT_SEED_FILE, help="credentials, patients, staff")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault generator")
    parser.add_argument("--faults", default="{}", help="fault probabilities as JSON, e.g. '{\"http_503\": 0.2}'")
    parser.add_argument("--processing-delay", type=float, default=None, help="seconds before a document's outcome")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s cobalt-sandbox %(message)s", stream=sys.stderr)
    config = SandboxConfig.load(args.seed_file)
    if args.processing_delay is not None:
        config.processing_delay_seconds = args.processing_delay
    faults = FaultSettings.from_dict({"seed": args.fault_seed, **json.loads(args.faults)})
    sandbox = CobaltSandbox(config, faults)
    port = sandbox.serve(args.port)
    print(f"Cobalt sandbox listening on http://127.0.0.1:{port}/v1", flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stop.wait()
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
