"""``python -m tests.fakebq``: serve the fake as its own process.

Prints ``FAKEBQ_URL=http://HOST:PORT`` as the only stdout line once it
listens, so a launcher can read the port it got from ``--port 0``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import FakeBigQuery
from .state import DEFAULT_USER_EMAIL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakebq", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="seed for rate-based faults")
    parser.add_argument("--user-email", default=DEFAULT_USER_EMAIL)
    parser.add_argument("--freeze", action="store_true", help="start with a frozen clock")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    fake = FakeBigQuery(args.host, args.port, seed=args.seed, user_email=args.user_email, verbose=args.verbose)
    if args.freeze:
        fake.clock.freeze()

    def on_signal(signum, frame):
        # shutdown() blocks until serve_forever returns, so not on this thread.
        threading.Thread(target=fake._httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"FAKEBQ_URL={fake.url}", flush=True)
    try:
        fake.serve_forever()
    finally:
        fake.state.interrupt.set()
        fake._httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
