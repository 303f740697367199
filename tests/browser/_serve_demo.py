"""Serve the demo like ``keyfob demo`` does, with keyfob settings from the command line (tests only).

``python _serve_demo.py STRATEGY PORT DATA_DIR [setting=seconds ...]``: the browser tests use it to
shorten time windows (``refresh_grace=1``) that ``keyfob demo`` keeps at their production defaults.
"""

from __future__ import annotations

import sys

import uvicorn

from keyfob.demo import create_app


def main(argv: list[str]) -> None:
    strategy, port, data_dir, *pairs = argv
    settings = {name: float(value) for name, value in (pair.split("=", 1) for pair in pairs)}
    app = create_app(strategy, None, data_dir, port=int(port), **settings)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="info")


if __name__ == "__main__":
    main(sys.argv[1:])
