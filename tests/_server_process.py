"""A server the tests start as a subprocess: its own process group, ready when a URL answers 200.

Shared by the browser tests (the demo, the admin console, the Django quick start) so that start-up,
waiting and shutdown are written once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest


@contextlib.contextmanager
def server_process(cmd: Sequence[str], *, log_path: Path, ready_url: str, what: str, startup: float,
                   env: Mapping[str, str] | None = None, cwd: Path | None = None
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (output to ``log_path``) until the block ends; fail with the log's tail if it exits
    or ``ready_url`` does not answer 200 within ``startup`` seconds. The whole process group is stopped."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env) if env is not None else None, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not answer in {startup} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)  # polling for start-up, not an assertion
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
