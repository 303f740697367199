"""The ``keyfob`` command: Click commands, Rich output, one-line errors that say what to do next."""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import secrets as _secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from rich.console import Console
from rich.table import Table

from .. import __version__
from .._session import SessionInfo
from ..engine import Keyfob
from ..errors import ConfigError, KeyfobError, StoreUnavailable
from ..settings import STRATEGIES
from ..stores import SessionRecord, SessionStore, open_store
from ._inspect import DEFAULT_COOKIE_NAME, Report, inspect_token, opaque_hash, split_cookie
from ._target import (
    Target,
    current_store,
    data_dir_option,
    require_existing,
    resolve,
    store_hint,
    store_option,
    write_demo_config,
)
from ._util import AnyArgumentCommand, CLIError, duration, require_modules, run, short_time, when

__all__ = ["cli", "main"]

T = TypeVar("T")

_ENV_HELP = """\
Configuration comes from the environment: KEYFOB_SECRET (comma list, newest first;
`keyfob secret` makes one), KEYFOB_STRATEGY (jwt | database | hybrid) and KEYFOB_STORE
(e.g. sqlite:///keyfob.db, postgresql://host/db, redis://localhost:6379/0).
KEYFOB_DATA_DIR (or --data-dir) points the commands at a `keyfob demo` data dir: its store,
secret and strategy."""


class KeyfobGroup(click.Group):
    """Turns keyfob's errors into one clear line plus the next step (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise CLIError(exc.message, hint=exc.hint or None, exit_code=2) from None
        except StoreUnavailable as exc:
            # said once: the store's message already quotes its driver's error, usually word for word
            cause = str(exc.__cause__) if exc.__cause__ is not None else ""
            message = exc.message if not cause or cause in exc.message else f"{exc.message}: {cause}"
            hint = exc.hint if exc.hint and exc.hint != StoreUnavailable.default_hint else None
            raise CLIError(message, hint=hint or store_hint(current_store(ctx))) from None
        except KeyfobError as exc:
            raise CLIError(exc.message, hint=exc.hint or None) from None


def _console(*, err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=False)


def _redact(url: str) -> str:
    """A store URL without its password (safe to print)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://…"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def _env_secrets() -> list[str]:
    raw = os.environ.get("KEYFOB_SECRET") or os.environ.get("AUTH_SECRET") or ""
    return [s.strip() for s in raw.split(",") if s.strip()]


def _fob(target: Target | str, strategy: str | None, **extra: Any) -> Keyfob:
    """``Keyfob.from_env()`` with the command line's overrides (ConfigError → exit 2)."""
    if isinstance(target, str):
        target = Target(target, "--store")
    return Keyfob.from_env(**{**extra, **target.engine_overrides(strategy)})


def _existing(store_url: str | None, data_dir: Path | None, command: str) -> Target:
    """The store a read-only command works on; an error (not a new empty file) when it is not there."""
    target = resolve(store_url, data_dir)
    require_existing(target, command=command)
    return target


def _existing_fob(
    store_url: str | None, data_dir: Path | None, strategy: str | None, command: str
) -> Keyfob:
    """``_fob`` on an existing store (the configuration is checked first: a missing secret is exit 2)."""
    target = resolve(store_url, data_dir)
    fob = _fob(target, strategy)
    require_existing(target, command=command)
    return fob


async def _using(fob: Keyfob, body: Callable[[Keyfob], Awaitable[T]]) -> T:
    try:
        return await body(fob)
    finally:
        await fob.close()


_strategy_option = click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=None,
    help="Override KEYFOB_STRATEGY (it decides how revocation works).",
)


# -- the group ----------------------------------------------------------------------------------------


@click.group(
    cls=KeyfobGroup,
    epilog=_ENV_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="keyfob")
def cli() -> None:
    """keyfob — session management for Python web apps (jwt, database and hybrid strategies)."""


# -- secret -------------------------------------------------------------------------------------------


@cli.command(short_help="Print a fresh random secret for KEYFOB_SECRET.")
@click.option("--env", "as_env", is_flag=True, help="Print it as KEYFOB_SECRET=... for a .env file.")
def secret(as_env: bool) -> None:
    """Print a fresh random secret: 32 bytes from the OS CSPRNG, base64url.

    \b
    Use it as KEYFOB_SECRET. To rotate, put the new secret first and keep the old one:
      KEYFOB_SECRET=<new>,<old>
    Tokens made with the old secret keep working until they expire; new ones use the new secret.
    """
    value = base64.urlsafe_b64encode(_secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    click.echo(f"KEYFOB_SECRET={value}" if as_env else value)


# -- inspect ------------------------------------------------------------------------------------------


@cli.command(cls=AnyArgumentCommand, short_help="Decode a session cookie and explain it.")
@click.argument("token")
@click.option(
    "--secret",
    "secret_opts",
    multiple=True,
    metavar="SECRET",
    help="Secret to decode with (repeat, or a comma list, newest first). Default: $KEYFOB_SECRET "
    "(or $AUTH_SECRET). Prefer the environment: command lines end up in shell history.",
)
@click.option(
    "--cookie-name",
    default=None,
    metavar="NAME",
    help=f"The cookie's name, which is the key-derivation salt. Default: {DEFAULT_COOKIE_NAME} "
    "(on http://localhost), trying __Host-keyfob.session-token and __Secure-keyfob.session-token (HTTPS) "
    "and Auth.js's authjs.session-token / __Secure-authjs.session-token too. Give it to check one name.",
)
@click.option(
    "--v4", is_flag=True, help="Read a next-auth v4 cookie (dir + A256GCM; detected automatically too)."
)
@click.option(
    "--update-age",
    type=float,
    default=86400,
    envvar="KEYFOB_UPDATE_AGE",
    show_default=True,
    metavar="SECONDS",
    help="The server's update_age, to tell when a jwt cookie rolls.",
)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=None,
    help="Look opaque (database / refresh) tokens up in this store (default: the data dir's, else "
    "$KEYFOB_STORE, if set).",
)
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help='Print {"valid", "payload", "reason", ...} as JSON.')
def inspect(
    token: str,
    secret_opts: tuple[str, ...],
    cookie_name: str | None,
    v4: bool,
    update_age: float,
    store_url: str | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Decode a session cookie or token and explain it — or say exactly why it is refused.

    \b
    TOKEN is a cookie value (or name=value). Use - to read it from stdin:
      pbpaste | keyfob inspect -
    Understands jwt-strategy and Auth.js v5 cookies (JWE), next-auth v4 cookies, hybrid access
    tokens (JWS) and, with --store, opaque database / refresh tokens.
    Exits 0 when the token is valid now, 1 when it is not, 2 when keyfob is not set up for it.
    """
    if token == "-":
        token = sys.stdin.read()
    pasted_name, value = split_cookie(token)
    target = resolve(store_url, data_dir)
    secrets_list = [s.strip() for opt in secret_opts for s in opt.split(",") if s.strip()] or _env_secrets()
    if not secrets_list and target.secret is not None:
        secrets_list = [target.secret]
    if pasted_name is not None:
        pasted_name = re.sub(r"\.\d+$", "", pasted_name)  # a chunk (name.0): the salt is the base name
    name = cookie_name or pasted_name or DEFAULT_COOKIE_NAME
    given = cookie_name is not None or pasted_name is not None
    try:
        report = inspect_token(
            value,
            secrets=secrets_list,
            cookie_name=name,
            cookie_name_given=given,
            v4=v4,
            update_age=update_age,
        )
    except ConfigError as exc:
        raise CLIError(exc.message, hint=exc.hint or None, exit_code=2) from None
    if report.kind == "opaque" and target.named:
        require_existing(target, command="inspect")
        report = run(_lookup_opaque(value, target.store))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=False, default=str))
    else:
        _print_report(report)
    sys.exit(0 if report.valid else 1)


async def _lookup_opaque(token: str, store_url: str) -> Report:
    """Find an opaque token in the store by its SHA-256 (how every store keys it)."""
    store = open_store(store_url)
    now = time.time()
    try:
        rec = await store.get(opaque_hash(token))
    finally:
        await store.close()
    if rec is None:
        return Report(
            False,
            "opaque",
            reason="no session in the store has this token: signed out, revoked, rotated away, "
            "or expired and cleaned up (or it belongs to another store)",
            hint="sign in again",
        )
    payload = {
        "id": rec.id,
        "user_id": rec.user_id,
        "ip": rec.ip,
        "user_agent": rec.user_agent,
        "data": dict(rec.data),
        "generation": rec.generation,
    }
    times = {"created": rec.created_at, "last_seen": rec.last_seen_at, "expires": rec.expires_at}
    if rec.absolute_expires_at is not None:
        times["absolute_expires"] = rec.absolute_expires_at
    report = Report(True, "opaque", payload=payload, times=times)
    if rec.retired_at is not None:
        report.valid = False
        report.times["retired"] = rec.retired_at
        report.reason = (
            f"a hybrid refresh token that was rotated away {duration(now - rec.retired_at)} ago; "
            "presenting it again revokes the whole session (reuse detection)"
        )
        report.hint = "use the newest refresh token"
    elif rec.expires_at <= now or (rec.absolute_expires_at is not None and rec.absolute_expires_at <= now):
        report.valid = False
        report.reason = (
            f"expired {duration(now - min(rec.expires_at, rec.absolute_expires_at or rec.expires_at))} ago"
        )
        report.hint = "sign in again"
    else:
        report.notes.append("a live stored session (database token or hybrid refresh token)")
    return report


_KIND = {
    "jwe": "encrypted session cookie (JWE dir + A256CBC-HS512: jwt strategy / Auth.js v5)",
    "jwe-v4": "next-auth v4 session cookie (JWE dir + A256GCM)",
    "jws": "hybrid access token (JWS)",
    "opaque": "opaque token (database session or hybrid refresh token)",
    "unknown": "token",
}
_TIME_LABELS = {
    "created": "session created",
    "authenticated": "signed in",
    "issued": "issued",
    "last_seen": "last seen",
    "expires": "expires",
    "absolute_expires": "absolute limit",
    "rolls_at": "rolls at",
    "refreshes_at": "refreshes at",
    "retired": "retired",
}


def _print_report(report: Report) -> None:
    out = _console()
    now = time.time()
    if report.valid:
        out.print(f"[bold green]✓ valid[/] {_KIND[report.kind]}")
    else:
        out.print(f"[bold red]✗ invalid[/] {_KIND[report.kind]}")
        out.print(f"  [bold]{'why':<16}[/]{report.reason}", markup=True)
        if report.hint:
            out.print(f"  [bold]{'next':<16}[/]{report.hint}")
    rows: list[tuple[str, str]] = []
    if report.cookie_name:
        rows.append(("cookie name", report.cookie_name))
    if report.key_label:
        rows.append(
            (
                "key",
                report.key_label
                + ("" if report.key_index == 0 else " — re-issued with the newest secret when it rolls"),
            )
        )
    if report.header:
        rows.append(("header", ", ".join(f"{k} {_abbrev(v)}" for k, v in report.header.items())))
    for key in (
        "created",
        "authenticated",
        "issued",
        "last_seen",
        "rolls_at",
        "refreshes_at",
        "expires",
        "absolute_expires",
        "retired",
    ):
        if key in report.times:
            text = when(report.times[key], now)
            if key == "rolls_at" and report.times[key] <= now and report.valid:
                text += " — rolls on its next request"
            rows.append((_TIME_LABELS[key], text))
    for label, text in rows:
        out.print(f"  [bold]{label:<16}[/]{text}", markup=True, highlight=False)
    for note in report.notes:
        out.print(f"  [dim]note: {note}[/]")
    if report.payload is not None:
        out.print("  [bold]claims[/]" if report.kind != "opaque" else "  [bold]record[/]")
        out.print_json(json.dumps(report.payload, default=str), indent=2)


# -- migrate ------------------------------------------------------------------------------------------


@cli.command(short_help="Create or upgrade keyfob's tables.")
@store_option
@data_dir_option
def migrate(store_url: str | None, data_dir: Path | None) -> None:
    """Create keyfob's tables, or upgrade them to this version's schema. Safe to run again.

    A new SQLite file is created only for a store you named (--store, KEYFOB_STORE or --data-dir),
    never for the unnamed default ./keyfob.db.
    """
    target = resolve(store_url, data_dir)
    if not target.named:
        require_existing(target, command="migrate")
    store_url = target.store

    async def go() -> tuple[int | None, int | None]:
        store = open_store(store_url)
        version: Callable[[], Awaitable[int | None]] | None = getattr(store, "schema_version", None)
        try:
            before = await version() if version else None
            await store.migrate()
            after = await version() if version else None
        finally:
            await store.close()
        return before, after

    before, after = run(go())
    where = _redact(store_url)
    if after is None:
        click.echo(f"{where}: ready (this store keeps no schema to migrate)")
    elif before is None:
        click.echo(f"{where}: created keyfob's tables (schema version {after})")
    elif before == after:
        click.echo(f"{where}: already up to date (schema version {after}); nothing to do")
    else:
        click.echo(f"{where}: upgraded the schema from version {before} to {after}")


# -- sessions -----------------------------------------------------------------------------------------


@cli.group(cls=KeyfobGroup, epilog=_ENV_HELP, short_help="List and revoke stored sessions.")
def sessions() -> None:
    """List and revoke stored sessions (database and hybrid strategies keep them)."""


@sessions.command("list")
@click.option("--user", "user_id", metavar="ID", help="The user whose sessions to list.")
@click.option("--all", "list_all", is_flag=True, help="Every user's active sessions (read page by page).")
@click.option(
    "--page-size",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Rows read per store query with --all.",
)
@store_option
@data_dir_option
@_strategy_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def sessions_list(
    user_id: str | None,
    list_all: bool,
    page_size: int,
    store_url: str | None,
    data_dir: Path | None,
    strategy: str | None,
    as_json: bool,
) -> None:
    """List active sessions: id, user, device, ip, created, last seen, expires.

    --user ID lists one user's; --all lists everyone's, reading the store a page at a time
    (with a progress bar on long listings). With neither, it prints how many rows the store holds.
    """
    if list_all and user_id is not None:
        raise CLIError("--all and --user do not go together", hint="pass one of them", exit_code=2)
    fob = _existing_fob(store_url, data_dir, strategy, "sessions list")

    async def go(f: Keyfob) -> tuple[int, list[dict[str, Any]]]:
        if list_all:
            infos = await _every_session(f, page_size)
        elif user_id is None:
            await f.start()
            return await f.store.count(), []
        else:
            infos = await f.list_sessions(user_id)
        return len(infos), [
            {**i.to_json(), "user_id": i.user_id, "_times": (i.created_at, i.last_seen_at, i.expires_at)}
            for i in infos
        ]

    count, items = run(_using(fob, go))
    if user_id is None and not list_all:
        if as_json:
            click.echo(json.dumps({"stored_rows": count}))
            return
        click.echo(f"the store holds {count} session row(s) (live, expired and retired refresh tokens).")
        click.echo("  → pass --user ID to list one user's sessions, or --all for everyone's.")
        return
    if as_json:
        click.echo(json.dumps([{k: v for k, v in i.items() if k != "_times"} for i in items], indent=2))
        return
    out = _console()
    who = "anyone" if list_all else repr(user_id)
    if not items:
        if fob.settings.strategy == "jwt":
            out.print(
                f"no stored sessions for {who}: the jwt strategy keeps none server-side "
                "(`keyfob sessions revoke-user` still signs a user out everywhere)."
            )
        else:
            out.print(f"no active sessions for {who if list_all else 'user ' + who}.")
        return
    if not out.is_terminal:
        out = Console(highlight=False, width=max(out.width, 150))
    now = time.time()
    title = f"{len(items)} active session(s)" if list_all else f"sessions of {user_id}"
    table = Table(title=f"{title} ({fob.settings.strategy} strategy)", title_justify="left")
    for col in ("id", "user", "device", "ip", "created", "last seen", "expires"):
        table.add_column(col, no_wrap=col == "id", overflow="fold")
    for i in items:
        created, seen, expires = i["_times"]
        table.add_row(
            i["id"],
            i["user_id"],
            i["device"],
            i["ip"] or "-",
            short_time(created, now, rel=False),
            short_time(seen, now),
            short_time(expires, now, rel=False),
        )
    out.print(table)


async def _every_session(fob: Keyfob, page_size: int) -> list[SessionInfo]:
    """Every live session in the store, read ``page_size`` rows per query (``store.sessions_page``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .._devices import device_label
    from ..stores._protocol import is_live

    await fob.start()
    store = fob.store
    page: Callable[..., Awaitable[tuple[Sequence[SessionRecord], str | None]]] | None = getattr(
        store, "sessions_page", None
    )
    if page is None or getattr(store, "stores_raw_tokens", False):
        raise CLIError(
            f"this store ({type(store).__name__}) cannot list every session",
            hint="pass --user ID to list one user's sessions",
        )
    total = await store.count()
    now, idle = fob.clock(), fob.settings.idle_timeout
    out: list[SessionInfo] = []
    listed: set[bytes] = set()  # a SCAN-based store (Redis) may hand a row out twice
    cursor: str | None = None
    with Progress(
        TextColumn("reading sessions"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(err=True),
        transient=True,
        disable=total <= page_size,  # one page: nothing to watch
    ) as progress:
        task = progress.add_task("sessions", total=total or 1)
        while True:
            records, cursor = await page(cursor, limit=page_size)
            progress.update(task, advance=len(records))
            for rec in records:
                if rec.token_hash in listed:
                    continue
                listed.add(rec.token_hash)
                if is_live(rec, now, idle):
                    out.append(
                        SessionInfo(
                            id=rec.id,
                            user_id=rec.user_id,
                            created_at=rec.created_at,
                            last_seen_at=rec.last_seen_at,
                            expires_at=rec.expires_at,
                            ip=rec.ip,
                            user_agent=rec.user_agent,
                            device=device_label(rec.user_agent),
                            current=False,
                        )
                    )
            if cursor is None:
                break
    out.sort(key=lambda i: (i.user_id, -i.last_seen_at))
    return out


@sessions.command("revoke", cls=AnyArgumentCommand)
@click.argument("session_id")
@store_option
@data_dir_option
@_strategy_option
def sessions_revoke(
    session_id: str, store_url: str | None, data_dir: Path | None, strategy: str | None
) -> None:
    """Revoke one session by its id (as `keyfob sessions list` shows it; an id may start with -)."""
    fob = _existing_fob(store_url, data_dir, strategy, "sessions revoke")

    async def go(f: Keyfob) -> tuple[bool, str | None]:
        info = await f.get_session(session_id)
        if info is None and f.settings.strategy != "jwt":
            return False, None
        await f.revoke(session_id)
        return True, info.user_id if info else None

    done, user = run(_using(fob, go))
    if not done:
        raise CLIError(
            f"no live session has the id {session_id!r}",
            hint="it may already be gone; `keyfob sessions list --user ID` shows the live ones",
        )
    if fob.settings.strategy == "jwt":
        click.echo(
            f"session {session_id} is refused from now on (jwt tokens cannot be recalled, so its id is "
            "denylisted until it would have expired)."
        )
    else:
        click.echo(f"revoked session {session_id}" + (f" of user {user}" if user else "") + ".")
    _feed_note(fob)


@sessions.command("revoke-user", cls=AnyArgumentCommand)
@click.argument("user_id")
@store_option
@data_dir_option
@_strategy_option
def sessions_revoke_user(
    user_id: str, store_url: str | None, data_dir: Path | None, strategy: str | None
) -> None:
    """Sign a user out everywhere: revoke every session of USER_ID."""
    fob = _existing_fob(store_url, data_dir, strategy, "sessions revoke-user")
    n = run(_using(fob, lambda f: f.revoke_user(user_id)))
    if n < 0:
        click.echo(
            f"signed {user_id} out everywhere: their token version was raised, so every jwt cookie made "
            "before now is refused."
        )
    else:
        click.echo(f"revoked {n} session(s) of user {user_id}.")
    _feed_note(fob)


def _feed_note(fob: Keyfob) -> None:
    if fob.feed is None and fob.settings.strategy in ("jwt", "hybrid"):
        click.echo(
            f"  note: a {fob.settings.strategy} server already running on this SQLite store keeps its own "
            "in-memory revocation view and sees this only after a restart"
            + (
                " (or, for hybrid, when the access token next refreshes)"
                if fob.settings.strategy == "hybrid"
                else ""
            )
            + "; PostgreSQL and Redis stores broadcast revocations to every node.",
            err=True,
        )


# -- cleanup ------------------------------------------------------------------------------------------


@cli.command(short_help="Delete expired sessions, in batches.")
@store_option
@data_dir_option
@click.option(
    "--batch",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Rows deleted per transaction (small batches never block sign-ins for long).",
)
def cleanup(store_url: str | None, data_dir: Path | None, batch: int) -> None:
    """Delete expired sessions, in batches, with a progress bar. Run it from cron daily."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    store_url = _existing(store_url, data_dir, "cleanup").store

    async def go() -> tuple[int, int]:
        store: SessionStore = open_store(store_url)
        try:
            await store.migrate()
            stored = await store.count()
            deleted = 0
            with Progress(
                TextColumn("deleting expired sessions"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=_console(err=True),
                transient=True,
            ) as progress:
                task = progress.add_task("cleanup", total=stored or 1)
                while True:
                    n = await store.delete_expired(time.time(), batch=batch)
                    deleted += n
                    progress.update(task, advance=n)
                    if n < batch:
                        break
            return deleted, await store.count()
        finally:
            await store.close()

    deleted, left = run(go())
    click.echo(f"deleted {deleted} expired session row(s) from {_redact(store_url)}; {left} remain.")


# -- jwks ---------------------------------------------------------------------------------------------


@cli.command(short_help="Print the JWKS that verifies access tokens.")
@click.option(
    "--eddsa",
    is_flag=True,
    help="The server runs with jwks=True (EdDSA access tokens): print those public keys.",
)
def jwks(eddsa: bool) -> None:
    """Print the JWKS (public keys that verify hybrid access tokens), as /.well-known/jwks.json serves it."""
    try:
        fob = _fob("memory://", "hybrid", jwks=eddsa, feed=None)
    except AttributeError:  # a keyfob build whose tokens layer cannot derive EdDSA keys yet
        raise CLIError(
            "this keyfob build cannot derive EdDSA access-token keys",
            hint="upgrade keyfob, or drop --eddsa",
            exit_code=2,
        ) from None
    doc = fob.jwks()
    click.echo(json.dumps(doc, indent=2))
    if not doc.get("keys"):
        click.echo(
            "note: no public keys — access tokens are signed with HS256 (a shared secret that is never "
            "published); run the server with jwks=True and pass --eddsa to publish EdDSA keys.",
            err=True,
        )


# -- doctor -------------------------------------------------------------------------------------------


_MARK = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[bold red]✗[/]", "skip": "[dim]-[/]"}


@cli.command(short_help="Check a configuration and say what to fix.")
@click.option(
    "--origin",
    metavar="URL",
    default=None,
    help="The site's origin, e.g. https://app.example: check the cookie attributes browsers get there.",
)
@store_option
@data_dir_option
@_strategy_option
@click.option(
    "--feed",
    "feed_url",
    metavar="URL",
    default=None,
    help="Revocation feed URL to test (default: the store's own feed).",
)
@click.option(
    "--cookie-domain", default=None, metavar="DOMAIN", help="The app's cookie_domain, if it sets one."
)
@click.option(
    "--samesite",
    type=click.Choice(["lax", "strict", "none"]),
    default=None,
    help="The app's cookie_samesite (default lax).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the store and the feed.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "problems", "checks": [...]} as JSON.')
def doctor(
    origin: str | None,
    store_url: str | None,
    data_dir: Path | None,
    strategy: str | None,
    feed_url: str | None,
    cookie_domain: str | None,
    samesite: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Check a configuration: the secret (strength, rotation), the cookies for --origin, the store
    (reachable; for Redis, whether it persists), the revocation feed (a live round trip, timed) and
    the clock skew against the store.

    \b
    Exits 0 when nothing failed (warnings included), 1 when something must be fixed.
    It writes no session; the feed probe revokes a random id no session has, for 5 seconds.
    """
    from ._doctor import diagnose

    target = resolve(store_url, data_dir)
    checks = run(
        diagnose(
            target,
            strategy=strategy,
            origin=origin,
            feed_url=feed_url,
            timeout=timeout,
            cookie_domain=cookie_domain,
            samesite=samesite,
        )
    )
    problems = [c.name for c in checks if c.status == "fail"]
    if as_json:
        doc = {"ok": not problems, "problems": problems, "checks": [c.to_json() for c in checks]}
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        out = _console()
        for c in checks:
            out.print(f"{_MARK[c.status]} [bold]{c.name:<12}[/] {c.summary}", highlight=False, soft_wrap=True)
            if c.hint and c.status in ("warn", "fail"):
                out.print(f"  {'':<12} → {c.hint}", highlight=False, soft_wrap=True)
        verdict = "all is well" if not problems else f"{len(problems)} problem(s): {', '.join(problems)}"
        out.print(f"[bold {'green' if not problems else 'red'}]{verdict}[/]")
    sys.exit(1 if problems else 0)


# -- demo ---------------------------------------------------------------------------------------------


@cli.command(short_help="Run the demo app on 127.0.0.1.")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=None,
    help="Session strategy (default: $KEYFOB_STRATEGY, else hybrid).",
)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    default=None,
    help="Session store URL (default: the SQLite file <data-dir>/keyfob.db).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="KEYFOB_DATA_DIR",
    default=Path(".keyfob-demo"),
    show_default=True,
    help="Where the demo keeps its users, sessions and generated secret ($KEYFOB_DATA_DIR). The other "
    "commands reach them with the same --data-dir.",
)
def demo(strategy: str | None, store_url: str | None, port: int, data_dir: Path) -> None:
    """Run the demo app (sign up, sign in, devices, sign out everywhere) on http://127.0.0.1:PORT."""
    require_modules(["fastapi", "uvicorn", "argon2", "multipart", "jinja2"], extra="demo", what="the demo")
    import uvicorn

    from ..demo import create_app

    chosen = strategy or os.environ.get("KEYFOB_STRATEGY") or "hybrid"
    if chosen not in STRATEGIES:
        raise CLIError(
            f"unknown strategy {chosen!r}", hint=f"use one of {', '.join(STRATEGIES)}", exit_code=2
        )
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise CLIError(
                f"port {port} on 127.0.0.1 is in use", hint="pass --port with a free port"
            ) from None
    app = create_app(chosen, store_url, data_dir, port=port)  # cookies named after the port
    write_demo_config(data_dir, strategy=chosen, store=store_url)
    click.secho(
        f"keyfob demo ({chosen} strategy) on http://127.0.0.1:{port}  — Ctrl+C to stop", fg="green", err=True
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


# -- bench --------------------------------------------------------------------------------------------


@cli.command(
    short_help="Run keyfob's benchmarks.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run keyfob's benchmarks (arguments go to the runner: `keyfob bench --help`)."""
    try:
        module = importlib.import_module("keyfob._bench")
    except ModuleNotFoundError as exc:
        if exc.name in ("keyfob._bench", "keyfob"):
            raise CLIError(
                "the benchmarks are not part of this keyfob install (keyfob._bench is missing)",
                hint="run them from a source checkout: pip install -e '.[bench]'",
                exit_code=2,
            ) from None
        raise CLIError(
            f"the benchmarks need {exc.name}, which is not installed",
            hint="pip install 'keyfob[bench]'",
            exit_code=2,
        ) from None
    main_fn: Callable[[Sequence[str]], int | None] = module.main
    rc = main_fn(list(args))
    sys.exit(rc if isinstance(rc, int) else 0)


def _abbrev(value: object) -> str:
    text = str(value)
    return text if len(text) <= 20 else text[:16] + "…"


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``keyfob``) and ``python -m keyfob``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="keyfob")
