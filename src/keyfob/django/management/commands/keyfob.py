"""``manage.py keyfob ...``: the ``keyfob`` CLI against this project's store, secret and strategy.

``python manage.py keyfob sessions list --user 1`` · ``... sessions revoke ID`` ·
``... sessions revoke-user 1`` · ``... cleanup`` · ``... doctor`` — every ``keyfob`` command, with
``KEYFOB_STORE``, ``KEYFOB_SECRET`` and ``KEYFOB_STRATEGY`` taken from ``settings.KEYFOB`` (and its
Django-derived defaults) for the duration of the command.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand

from ...conf import get_fob


class Command(BaseCommand):
    help = "Run the keyfob CLI (sessions list/revoke/revoke-user, cleanup...) on this project's store."

    def run_from_argv(self, argv: list[str]) -> None:
        from ....cli import cli

        fob = get_fob()
        s = fob.settings
        saved = {k: os.environ.get(k) for k in ("KEYFOB_STORE", "KEYFOB_SECRET", "KEYFOB_STRATEGY")}
        os.environ.update(KEYFOB_STORE=s.store, KEYFOB_SECRET=",".join(s.secrets), KEYFOB_STRATEGY=s.strategy)
        try:
            cli.main(args=argv[2:], prog_name=f"{os.path.basename(argv[0])} keyfob", standalone_mode=True)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="a keyfob command and its options")

    def handle(self, *args: Any, **options: Any) -> None:  # call_command("keyfob", "sessions", ...)
        self.run_from_argv(["manage.py", "keyfob", *args])
