"""Shared CLI plumbing: one-line errors with a next step, optional-dependency checks, time formatting."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import click

__all__ = ["AnyArgumentCommand", "CLIError", "duration", "require_modules", "run", "short_time", "when"]

T = TypeVar("T")


class CLIError(click.ClickException):
    """A failure the user can fix: printed as ``error: ...`` plus the next step, no traceback.

    ``exit_code`` is 1 for "it did not work" and 2 for "keyfob is not set up for this"
    (missing secret, missing optional dependency, bad configuration).
    """

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a ClassVar

    def show(self, file: IO[Any] | None = None) -> None:
        click.secho(f"error: {self.message}", err=True, fg="red", file=file)
        if self.hint:
            click.echo(f"  → {self.hint}", err=True, file=file)


class AnyArgumentCommand(click.Command):
    """A command whose arguments may start with ``-``: session ids and tokens are base64url, and
    about 1 in 64 begins with a dash (``keyfob sessions revoke -IC-nw...``).

    Before Click parses, every word that is not one of this command's own options (or an option's
    value) is moved behind a ``--``, in order, so Click reads it as an argument. ``-h``/``--help``
    and the options keep working wherever they appear; ``-`` (stdin) and an explicit ``--`` too.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        options: list[str] = []
        positional: list[str] = []
        words = iter(args)
        for word in words:
            if word == "--":
                positional.extend(words)
                break
            name = word.split("=", 1)[0]
            if word.startswith("-") and name in takes_value:
                options.append(word)
                if takes_value[name] and "=" not in word:
                    value = next(words, None)
                    if value is not None:
                        options.append(value)
            else:
                positional.append(word)
        return super().parse_args(ctx, [*options, "--", *positional] if positional else options)


# import name → what to install (the extra that provides it)
_EXTRAS = {
    "fastapi": "demo",
    "uvicorn": "demo",
    "argon2": "demo",
    "multipart": "demo",
    "python_multipart": "demo",
    "jinja2": "demo",
}


def require_modules(names: Iterable[str], *, extra: str, what: str) -> None:
    """Exit 2 with ``pip install 'keyfob[extra]'`` when an optional dependency is missing."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise CLIError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint=f"pip install 'keyfob[{extra}]'",
            exit_code=2,
        )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion (each CLI command is one short event loop)."""
    return asyncio.run(coro)


def duration(seconds: float) -> str:
    """``90`` → ``"1 min 30 s"``; two largest units, always positive."""
    s = abs(round(seconds))
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if s >= size or (name == "s" and not parts):
            n, s = divmod(s, size)
            parts.append(f"{n} {name}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def when(ts: float | None, now: float) -> str:
    """``2030-01-01 00:00:00 UTC (in 3 d 4 h)``, or ``-``."""
    if ts is None:
        return "-"
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = ts - now
    if abs(delta) < 1:
        return f"{stamp} (now)"
    rel = f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"
    return f"{stamp} ({rel})"


def short_time(ts: float, now: float, *, rel: bool = True) -> str:
    """Compact time for tables: ``2030-01-01 00:00``, plus a relative hint when ``rel``."""
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
    if not rel:
        return stamp
    delta = ts - now
    return f"{stamp} ({f'in {duration(delta)}' if delta > 0 else f'{duration(delta)} ago'})"
