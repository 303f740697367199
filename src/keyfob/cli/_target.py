"""Which store (and secret, and strategy) a command works on, and how to say that it is not there.

Precedence, most explicit first: ``--store URL``; ``--data-dir DIR`` (or ``KEYFOB_DATA_DIR``), the
folder ``keyfob demo --data-dir DIR`` keeps its files in; ``KEYFOB_STORE``; and last the default
SQLite file ``./keyfob.db``. A data dir also gives the secret (``DIR/keyfob-secret``, when
``KEYFOB_SECRET`` is not set) and the strategy the demo ran with (``DIR/keyfob-demo.json``, which
``keyfob demo`` writes; ``--strategy`` and ``KEYFOB_STRATEGY`` still win).

Read-only commands never create a store: a SQLite URL whose file is missing is an error that says
what to do. Only ``keyfob migrate`` creates one, and only when the store was named (``--store``,
``KEYFOB_STORE`` or a data dir) — never the unnamed default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ..settings import DEFAULT_STORE
from ._util import CLIError

__all__ = [
    "DEMO_CONFIG_FILE",
    "DEMO_SECRET_FILE",
    "DEMO_SESSIONS_FILE",
    "Target",
    "current_store",
    "data_dir_option",
    "require_existing",
    "resolve",
    "sqlite_file",
    "store_hint",
    "store_option",
    "write_demo_config",
]

# The demo's layout in its data dir (keyfob.demo._app's SECRET_FILE and SESSIONS_FILE; a test pins
# them equal). Spelled here so that the CLI does not import the demo's dependencies.
DEMO_SECRET_FILE = "keyfob-secret"
DEMO_SESSIONS_FILE = "keyfob.db"
DEMO_CONFIG_FILE = "keyfob-demo.json"  # written by `keyfob demo`: {"strategy": ..., "store": ...}

_META_KEY = "keyfob.store_url"


@dataclass(frozen=True)
class Target:
    """The store a command works on, where that choice came from, and what the data dir adds."""

    store: str
    source: str  # "--store", "--data-dir", "KEYFOB_STORE" or "default"
    strategy: str | None = None  # from the demo's data dir (the command line and env win)
    secret: str | None = None  # from DIR/keyfob-secret, only when KEYFOB_SECRET is unset
    data_dir: Path | None = None

    @property
    def named(self) -> bool:
        """Did the user name this store (rather than falling back to ./keyfob.db)?"""
        return self.source != "default"

    def engine_overrides(self, strategy: str | None) -> dict[str, Any]:
        """Keyword arguments for ``Keyfob.from_env`` (the store, the strategy, the data dir's secret)."""
        out: dict[str, Any] = {"store": self.store}
        chosen = strategy or os.environ.get("KEYFOB_STRATEGY") or self.strategy
        if chosen:
            out["strategy"] = chosen
        if self.secret is not None:
            out["secret"] = self.secret
        return out


def store_option(func: Any) -> Any:
    return click.option(
        "--store",
        "store_url",
        metavar="URL",
        default=None,
        help="Session store URL. Default: the data dir's store, else $KEYFOB_STORE, else ./keyfob.db.",
    )(func)


def data_dir_option(func: Any) -> Any:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="KEYFOB_DATA_DIR",
        default=None,
        help="A `keyfob demo --data-dir` folder: use the demo's store, secret and strategy "
        "(default: $KEYFOB_DATA_DIR).",
    )(func)


def resolve(store_url: str | None, data_dir: Path | None) -> Target:
    """The store (and data-dir extras) for these options; remembered for error messages."""
    target = _resolve(store_url, data_dir)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().meta[_META_KEY] = target.store
    return target


def _resolve(store_url: str | None, data_dir: Path | None) -> Target:
    strategy = secret = None
    dir_store: str | None = None
    if data_dir is not None:
        if not data_dir.is_dir():
            raise CLIError(
                f"the data dir {data_dir} does not exist",
                hint="pass the --data-dir you gave `keyfob demo` (its default is .keyfob-demo), "
                "or unset KEYFOB_DATA_DIR",
            )
        config = _read_demo_config(data_dir)
        strategy = config.get("strategy") if isinstance(config.get("strategy"), str) else None
        dir_store = config.get("store") if isinstance(config.get("store"), str) else None
        dir_store = dir_store or f"sqlite:///{(data_dir / DEMO_SESSIONS_FILE).resolve()}"
        if not (os.environ.get("KEYFOB_SECRET") or os.environ.get("AUTH_SECRET")):
            try:
                secret = (data_dir / DEMO_SECRET_FILE).read_text().strip() or None
            except OSError:
                secret = None
    if store_url:
        return Target(store_url, "--store", strategy, secret, data_dir)
    if dir_store is not None:
        return Target(dir_store, "--data-dir", strategy, secret, data_dir)
    env = os.environ.get("KEYFOB_STORE")
    if env:
        return Target(env, "KEYFOB_STORE")
    return Target(DEFAULT_STORE, "default")


def _read_demo_config(data_dir: Path) -> dict[str, Any]:
    try:
        value = json.loads((data_dir / DEMO_CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_demo_config(data_dir: Path, *, strategy: str, store: str | None) -> None:
    """Record what ``keyfob demo`` runs with, so ``--data-dir`` finds the same store and strategy."""
    data_dir.mkdir(parents=True, exist_ok=True)
    doc = {"strategy": strategy, "store": store}
    (data_dir / DEMO_CONFIG_FILE).write_text(json.dumps(doc) + "\n")


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (None for other stores and for ``:memory:``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("sqlite", "sqlite+aiosqlite") or not rest.startswith("/"):
        return None
    path = rest[1:].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def require_existing(target: Target, *, command: str) -> None:
    """Refuse to work on a SQLite file that is not there (opening it would create an empty one)."""
    path = sqlite_file(target.store)
    if path is None or path.exists():
        return
    if target.source == "default":
        raise CLIError(
            f"no store is configured and there is no {path} here, so `keyfob {command}` has nothing to "
            "work on",
            hint="pass --store URL or set KEYFOB_STORE (--data-dir DIR for a demo's store); "
            f"`keyfob migrate --store sqlite:///{path}` creates a new SQLite store",
        )
    where = {"--store": "--store", "--data-dir": "the data dir", "KEYFOB_STORE": "KEYFOB_STORE"}
    raise CLIError(
        f"there is no SQLite store at {path.resolve()} (named by {where[target.source]}); "
        f"`keyfob {command}` does not create one",
        hint="check the path"
        + (" (the demo creates it when it first starts)" if target.source == "--data-dir" else "")
        + f", or create it with `keyfob migrate --store {target.store}`",
    )


def store_hint(url: str | None) -> str:
    """What to check when a store cannot be reached, worded for the kind of store."""
    if url is None:
        return "check KEYFOB_STORE / --store, and that the store is reachable"
    path = sqlite_file(url)
    if path is not None:
        return (
            f"check that the folder {path.resolve().parent} exists and that this user can read and write "
            f"it and {path.name} (a keyfob SQLite store)"
        )
    scheme = url.split("://", 1)[0].lower()
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port
    except ValueError:
        host, port = "?", None
    if scheme.startswith("postgres"):
        return f"is PostgreSQL running at {host}:{port or 5432}? check the URL (--store / KEYFOB_STORE)"
    if scheme.startswith("redis"):
        return f"is Redis running at {host}:{port or 6379}? check the URL (--store / KEYFOB_STORE)"
    return "check the store URL (--store / KEYFOB_STORE) and that its server is running"


def current_store(ctx: click.Context) -> str | None:
    """The store URL the command in ``ctx`` resolved (for error hints), if any."""
    value = ctx.find_root().meta.get(_META_KEY)
    return value if isinstance(value, str) else None
