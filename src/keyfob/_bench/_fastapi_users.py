"""fastapi-users set up the way its documentation does (SQLAlchemy async + aiosqlite, cookie JWT).

Used as a peer by :mod:`keyfob._bench.micro` (its JWT and database strategies' ``read_token``)
and by :mod:`keyfob._bench.apps` (a FastAPI endpoint behind ``current_user(active=True)``).
fastapi-users is an optional bench extra: importing this module raises ImportError without it.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin
from fastapi_users.authentication import AuthenticationBackend, CookieTransport, JWTStrategy
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from ._core import SECRET

COOKIE = "fastapiusersauth"
USER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


def jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(secret=SECRET, lifetime_seconds=3600)


@dataclass
class FUsers:
    """An engine + session factory on one SQLite file, and helpers to read tokens as an app would."""

    url: str

    def __post_init__(self) -> None:
        self.engine = create_async_engine(self.url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def setup(self) -> tuple[str, str]:
        """Create the tables and one active user; return (JWT cookie token, database strategy token)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        async with self.sessions() as s:
            s.add(
                User(
                    id=USER_ID,
                    email="ada.lovelace@example.com",
                    hashed_password="x" * 60,
                    is_active=True,
                    is_superuser=False,
                    is_verified=True,
                )
            )
            await s.commit()
            user = await s.get(User, USER_ID)
            assert user is not None
            jwt_token = await jwt_strategy().write_token(user)
            db_strategy: DatabaseStrategy[User, uuid.UUID, AccessToken] = DatabaseStrategy(
                SQLAlchemyAccessTokenDatabase(s, AccessToken), lifetime_seconds=3600
            )
            db_token = await db_strategy.write_token(user)
        return jwt_token, db_token

    async def read_jwt(self, token: str) -> Any:
        """What a request through the JWT backend does: session, user manager, decode, user lookup."""
        async with self.sessions() as s:
            manager = UserManager(SQLAlchemyUserDatabase(s, User))
            return await jwt_strategy().read_token(token, manager)

    async def read_db(self, token: str) -> Any:
        """The same through the database strategy (access-token row lookup, then the user)."""
        async with self.sessions() as s:
            manager = UserManager(SQLAlchemyUserDatabase(s, User))
            strategy: DatabaseStrategy[User, uuid.UUID, AccessToken] = DatabaseStrategy(
                SQLAlchemyAccessTokenDatabase(s, AccessToken), lifetime_seconds=3600
            )
            return await strategy.read_token(token, manager)

    async def close(self) -> None:
        await self.engine.dispose()


def make_app_parts(url: str) -> tuple[Any, Any]:
    """(FastAPIUsers instance, current active user dependency) over the SQLite file at ``url``."""
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as s:
            yield s

    async def get_user_db(session: Annotated[AsyncSession, Depends(get_session)]) -> AsyncIterator[Any]:
        yield SQLAlchemyUserDatabase(session, User)

    async def get_user_manager(user_db: Annotated[Any, Depends(get_user_db)]) -> AsyncIterator[UserManager]:
        yield UserManager(user_db)

    backend = AuthenticationBackend(
        name="jwt", transport=CookieTransport(cookie_max_age=3600), get_strategy=jwt_strategy
    )
    fu = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
    return fu, fu.current_user(active=True)
