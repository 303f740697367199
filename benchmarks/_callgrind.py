"""Reading the dumps of ``valgrind --tool=callgrind --dump-before=getppid`` (the callgrind_*.py scripts).

Each script calls ``os.getppid()`` around the requests it measures, so callgrind writes one numbered
dump (``cg.out.<pid>.<k>``) per ``getppid``, each holding what ran since the one before.
"""

from __future__ import annotations

import glob
import os
import re

__all__ = ["dumps", "total"]


def dumps(out_dir: str, pid: int) -> list[str]:
    """Process ``pid``'s dump files in ``out_dir``, in the order callgrind wrote them."""
    return sorted(glob.glob(os.path.join(out_dir, f"cg.out.{pid}.*")),
                  key=lambda p: int(re.sub(r".*\.", "", p)))


def total(path: str) -> int:
    """The instructions one dump counted."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise ValueError(f"no totals in {path}")
