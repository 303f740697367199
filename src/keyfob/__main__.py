"""``python -m keyfob`` — the same as the ``keyfob`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
