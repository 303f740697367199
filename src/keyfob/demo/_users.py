"""The demo's user accounts: an embedded SQLite file (stdlib ``sqlite3``) and argon2id hashes.

keyfob manages sessions, not users; this is the smallest honest user table an app would have.
Calls are short and local, so they run inline; password hashing runs in a worker thread.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from anyio import to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["ROLES", "EmailTaken", "User", "Users"]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: The roles an admin can give in the console; "admin" opens the console.
ROLES = ("user", "support", "admin")


class EmailTaken(Exception):
    """An account with this email already exists."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str
    is_admin: bool = False
    created_at: float = 0.0
    role: str = "user"


_COLUMNS = "id, email, password_hash, is_admin, created_at, role"


def _user(row: tuple[str, str, str, int, float, str | None] | None) -> User | None:
    if row is None:
        return None
    uid, email, password_hash, is_admin, created_at, role = row
    return User(uid, email, password_hash, bool(is_admin), float(created_at),
                "admin" if is_admin else (role if role in ROLES else "user"))


def normalize_email(email: str) -> str:
    return email.strip().lower()


class Users:
    """Accounts in ``<data_dir>/keyfob-demo.db``. The first account created is the admin."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS users ("
                " id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,"
                " created_at REAL NOT NULL, is_admin INTEGER NOT NULL DEFAULT 0)"
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(users)")}
            if "is_admin" not in columns:  # a users file from before the admin console
                db.execute("ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0")
            if "role" not in columns:  # a users file from before role changes
                db.execute("ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user'")
            if db.execute("SELECT 1 FROM users WHERE is_admin = 1").fetchone() is None:
                # the first user to have signed up is the admin (also for an older users file)
                db.execute(
                    "UPDATE users SET is_admin = 1 WHERE id = "
                    "(SELECT id FROM users ORDER BY created_at, rowid LIMIT 1)"
                )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=5)) as db, db:
            yield db

    def by_email(self, email: str) -> User | None:
        with self._db() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM users WHERE email = ?", (normalize_email(email),)
            ).fetchone()
        return _user(row)

    def by_id(self, user_id: str) -> User | None:
        with self._db() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        return _user(row)

    def all(self, limit: int = 500) -> list[User]:
        """Every account (the admin first, then by sign-up time), at most ``limit``."""
        with self._db() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM users ORDER BY is_admin DESC, created_at, rowid LIMIT ?", (limit,)
            ).fetchall()
        return [u for u in map(_user, rows) if u is not None]

    async def add(self, email: str, password: str) -> User:
        """Create an account (the very first one is the admin); raises :class:`EmailTaken`."""
        email = normalize_email(email)
        if self.by_email(email) is not None:
            raise EmailTaken(email)
        hashed = await to_thread.run_sync(self.hasher.hash, password)
        uid, now = "u_" + secrets.token_hex(8), time.time()
        try:
            with self._db() as db:
                # one statement decides "first user?" and inserts, so two racing sign-ups cannot both be admin
                db.execute(
                    "INSERT INTO users (id, email, password_hash, created_at, is_admin) "
                    "SELECT ?, ?, ?, ?, NOT EXISTS (SELECT 1 FROM users)",
                    (uid, email, hashed, now),
                )
        except sqlite3.IntegrityError:
            raise EmailTaken(email) from None
        user = self.by_id(uid)
        assert user is not None
        return user

    async def authenticate(self, email: str, password: str) -> User | None:
        """The user whose email and password these are, or None (same cost either way)."""
        user = self.by_email(email)
        if user is None:
            # Spend the same time as a real check, so response times do not reveal which emails exist.
            if self._dummy_hash is None:
                self._dummy_hash = await to_thread.run_sync(self.hasher.hash, secrets.token_urlsafe(16))
            await self._verify(self._dummy_hash, password)
            return None
        if not await self._verify(user.password_hash, password):
            return None
        if self.hasher.check_needs_rehash(user.password_hash):
            await self.set_password(user.id, password)
        return user

    async def _verify(self, hashed: str, password: str) -> bool:
        try:
            return bool(await to_thread.run_sync(self.hasher.verify, hashed, password))
        except (VerificationError, InvalidHashError):
            return False

    def set_role(self, user_id: str, role: str) -> User | None:
        """Give ``user_id`` the role ``role`` (one of :data:`ROLES`; "admin" opens the console)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self._db() as db:
            db.execute("UPDATE users SET role = ?, is_admin = ? WHERE id = ?",
                       (role, int(role == "admin"), user_id))
        return self.by_id(user_id)

    async def set_password(self, user_id: str, password: str) -> None:
        hashed = await to_thread.run_sync(self.hasher.hash, password)
        with self._db() as db:
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user_id))
