"""Django's own ``tests/sessions_tests/``, fetched from the sdist of the installed Django into a cache.

Never committed: ``pip download --no-deps --no-binary :all: django==<installed>`` once, then the
``sessions_tests`` folder is kept in ``$KEYFOB_CACHE_DIR`` (default ``~/.cache/keyfob``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django


def cache_dir() -> Path:
    root = Path(os.environ.get("KEYFOB_CACHE_DIR") or Path.home() / ".cache" / "keyfob")
    return root / f"django-{django.__version__}-tests"


def fetch_sessions_tests() -> Path:
    """The directory that holds ``sessions_tests/`` (downloaded on first use). Raises OSError offline."""
    target = cache_dir()
    if (target / "sessions_tests" / "tests.py").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"django=={django.__version__}", "-d", tmp],
            check=True, capture_output=True, timeout=300,
        )
        (sdist,) = Path(tmp).glob("[Dd]jango-*.tar.gz")
        staging = Path(tmp) / "x"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/tests/sessions_tests/" in m.name and m.isfile()]
            tar.extractall(staging, members=members, filter="data")
        (src,) = staging.glob("*/tests/sessions_tests")
        target.mkdir(parents=True, exist_ok=True)
        final = target / "sessions_tests"
        partial = target / "sessions_tests.partial"
        if partial.exists():
            import shutil

            shutil.rmtree(partial)
        src.rename(partial)
        partial.rename(final)
    return target
