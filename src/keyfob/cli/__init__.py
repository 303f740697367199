"""The ``keyfob`` command line: ``secret``, ``inspect``, ``migrate``, ``sessions``, ``cleanup``,
``jwks``, ``doctor``, ``demo`` and ``bench``. Run ``keyfob --help``.

``main()`` is the console script; ``python -m keyfob`` calls it too.
"""

from __future__ import annotations

from ._app import cli, main

__all__ = ["cli", "main"]
