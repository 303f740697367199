"""The demo app under uvicorn, for the load test: ``python -m tests.security._load_server``.

Run in a sub-process by ``test_load.py`` (a real server on a real loopback socket, not ASGI
in-process). Bound to 127.0.0.1 only. Logs keyfob at INFO (session events) to stderr, so the test
can hand the server's log to the suite-wide log hygiene check; uvicorn's access log is off.

Passwords are hashed with a cheap argon2id here: this measures sessions, not password hashing.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from argon2 import PasswordHasher

from keyfob.demo import create_app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", required=True, choices=["jwt", "database", "hybrid"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--store", default=None)
    args = p.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("keyfob").setLevel(logging.INFO)
    app = create_app(
        args.strategy,
        args.store,
        args.data_dir,
        None,  # KEYFOB_SECRET from the environment (never on the command line)
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_config=None,  # keep the logging set up above
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Longer than any idle gap of a test client (default 5 s): otherwise a request sent on a
        # connection the server is closing at that instant fails with "Server disconnected", a
        # keep-alive race between client and server (browsers retry it), not a keyfob error.
        timeout_keep_alive=300,
        backlog=2048,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
