"""Serve the demo like ``keyfob demo`` does, with keyfob settings from the command line (tests only).

``python _serve_demo.py STRATEGY PORT DATA_DIR [setting=seconds ...] [clock_file=PATH]``: the browser
tests use it to shorten time windows (``refresh_grace=1``) that ``keyfob demo`` keeps at their
production defaults. With ``clock_file``, the engine's clock is the wall clock plus the number of
seconds written in that file (0 when it is missing): a test moves the server's time forward
(10 minutes for a step-up) by writing the file, instead of sleeping.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from keyfob.demo import create_app


def offset_clock(path: Path) -> Callable[[], float]:
    """``time.time()`` plus the offset in ``path``, read at every call (a test server: a few reads)."""

    def clock() -> float:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = ""
        return time.time() + (float(text) if text else 0.0)

    return clock


def main(argv: list[str]) -> None:
    strategy, port, data_dir, *pairs = argv
    options: dict[str, Any] = {}
    for name, value in (pair.split("=", 1) for pair in pairs):
        options[name] = offset_clock(Path(value)) if name == "clock_file" else float(value)
    if "clock_file" in options:
        options["clock"] = options.pop("clock_file")
    app = create_app(strategy, None, data_dir, port=int(port), **options)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="info")


if __name__ == "__main__":
    main(sys.argv[1:])
