#!/usr/bin/env python
"""Run the keyfob benchmark from a checkout: ``python benchmarks/run.py [--quick|--smoke] [--json]``.

The same as ``keyfob bench``; the code lives in ``keyfob._bench`` so the installed CLI has it too.
The full run that ``docs/BENCHMARKS.md`` shows::

    .venv/bin/python benchmarks/run.py --out benchmarks/results
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    try:
        from keyfob._bench import main
    except ImportError:  # a checkout without `pip install -e .`
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
        from keyfob._bench import main
    sys.exit(main(sys.argv[1:]))
