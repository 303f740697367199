"""``json.loads`` for small documents on the per-request path.

``json.loads(text)`` is a few Python calls (``JSONDecoder.decode``, ``raw_decode``, two whitespace
regex matches) around the C scanner, which for the ~100-byte session data keyfob stores costs more
than the parse. :func:`loads` calls the C scanner directly and falls back to ``json.loads`` for
anything it does not cover (leading/trailing whitespace, errors), so results and exceptions are
exactly ``json.loads``'s.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]

_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(text: str) -> Any:
    """Same result (or exception) as ``json.loads(text)`` for a ``str``."""
    try:
        value, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return json.loads(text)  # raises the error json.loads raises
    if end != len(text):
        return json.loads(text)  # trailing whitespace (accepted) or data (an error)
    return value
