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

__all__ = ["EmailTaken", "User", "Users"]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class EmailTaken(Exception):
    """An account with this email already exists."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str


def normalize_email(email: str) -> str:
    return email.strip().lower()


class Users:
    """Accounts in ``<data_dir>/keyfob-demo.db``."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS users ("
                " id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,"
                " created_at REAL NOT NULL)"
            )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=5)) as db, db:
            yield db

    def by_email(self, email: str) -> User | None:
        with self._db() as db:
            row = db.execute(
                "SELECT id, email, password_hash FROM users WHERE email = ?", (normalize_email(email),)
            ).fetchone()
        return None if row is None else User(*row)

    def by_id(self, user_id: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT id, email, password_hash FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else User(*row)

    async def add(self, email: str, password: str) -> User:
        """Create an account; raises :class:`EmailTaken`."""
        email = normalize_email(email)
        if self.by_email(email) is not None:
            raise EmailTaken(email)
        hashed = await to_thread.run_sync(self.hasher.hash, password)
        user = User(id="u_" + secrets.token_hex(8), email=email, password_hash=hashed)
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    (user.id, user.email, user.password_hash, time.time()),
                )
        except sqlite3.IntegrityError:
            raise EmailTaken(email) from None
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

    async def set_password(self, user_id: str, password: str) -> None:
        hashed = await to_thread.run_sync(self.hasher.hash, password)
        with self._db() as db:
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user_id))
