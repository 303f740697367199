"""Micro-benchmarks: token validation and store lookups, keyfob next to its floors and peers.

Groups (the ``group`` of each case in the JSON):

* ``floor`` — the least work that can do the job: a stdlib-only HS256 verify of the same claims,
  and keyfob's own JWE session cookie (``dir`` + ``A256CBC-HS512``) decrypted by hand with
  ``cryptography``.
* ``keyfob`` — ``await fob.authenticate(cookies)`` per strategy and store, with the cookies
  ``fob.create`` issued (a browser's request, minus HTTP).
* ``peer`` — PyJWT, joserfc (JWS and JWE + claims validation), itsdangerous as Starlette's
  ``SessionMiddleware`` reads its cookie, fastapi-users' JWT and database strategies.
* ``raw`` — the database strategy's floor: the same row read with the bare driver
  (stdlib ``sqlite3`` SHA-256 + primary key, ``asyncpg`` ``fetchrow`` on a held connection,
  ``redis.asyncio`` ``HGETALL``).
* ``scale`` — the database strategy and the raw lookup with the large store (1M sessions in the
  full run), next to the small one (10k).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._core import SECRET, SESSION_DATA, USER_ID, Case, Config, Results, Skip, check, log, run_rounds
from ._stores import Stores

__all__ = ["run_micro"]

Builder = Callable[[], Awaitable[list[Case | Skip]]]


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _payload(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWS compact token — only used to copy claims to the peers."""
    out: dict[str, Any] = json.loads(_b64d(token.split(".")[1]))
    return out


class Micro:
    """Builds every micro case; ``stores`` owns the Keyfob instances and database connections."""

    def __init__(self, cfg: Config, stores: Stores) -> None:
        self.cfg = cfg
        self.stores = stores
        self.claims: dict[str, Any] = {}
        self.jwe_token = ""
        self.jwe_cookie = ""

    # -- keyfob --------------------------------------------------------------------------------------
    async def keyfob_cases(self) -> list[Case | Skip]:
        out: list[Case | Skip] = []
        st = self.stores
        small, large = self.cfg.scale_sizes
        sizes = [small, large] if self.cfg.scale else [small]
        # database stores first, filled concurrently (a thread for SQLite, COPY, a Lua loop for Redis)
        jobs = [(store, size) for store in ("sqlite", "postgres", "redis") for size in sizes]
        filled = await asyncio.gather(
            *(st.session("database", store, fill=size) for store, size in jobs), return_exceptions=True
        )
        prepared = dict(zip(jobs, filled, strict=True))
        # jwt: the stateless strategy (its store is only read for user versions at sign-in)
        fob, cookies = await st.session("jwt", "sqlite")
        out.append(
            await _fob_case("keyfob_jwt", "keyfob", "keyfob jwt: authenticate (JWE cookie)", fob, cookies)
        )
        self.jwe_cookie, self.jwe_token = next(iter(cookies.items()))
        for store in ("sqlite", "redis", "postgres"):
            try:
                fob, cookies = await st.session("hybrid", store)
            except Exception as exc:
                out.append(Skip(f"keyfob_hybrid_{store}", f"{type(exc).__name__}: {exc}", "keyfob"))
                continue
            if store == "sqlite":
                access = cookies[fob.profile(True).session.name]
                self.claims = _payload(access)
            out.append(
                await _fob_case(
                    f"keyfob_hybrid_{store}",
                    "keyfob",
                    f"keyfob hybrid ({store} feed/store): authenticate (access JWT + view)",
                    fob,
                    cookies,
                )
            )
        for store in ("sqlite", "postgres", "redis"):
            for size in sizes:
                name = f"keyfob_db_{store}" if size == small else f"keyfob_db_{store}_{_size(size)}"
                group = "keyfob" if size == small else "scale"
                try:
                    got = prepared[(store, size)]
                    if isinstance(got, BaseException):
                        raise got
                    fob, cookies = got
                except Exception as exc:
                    out.append(Skip(name, f"{type(exc).__name__}: {exc}", group))
                    out.append(
                        Skip(
                            f"raw_{_raw_name(store)}" + ("" if size == small else f"_{_size(size)}"),
                            f"{type(exc).__name__}: {exc}",
                            "raw" if size == small else "scale",
                        )
                    )
                    continue
                out.append(
                    await _fob_case(
                        name,
                        group,
                        f"keyfob database ({store}, {size:,} sessions): authenticate",
                        fob,
                        cookies,
                    )
                )
                token = next(iter(cookies.values()))
                raw_name = f"raw_{_raw_name(store)}" + ("" if size == small else f"_{_size(size)}")
                try:
                    out.append(
                        await st.raw_case(store, size, token, raw_name, "raw" if size == small else "scale")
                    )
                except Exception as exc:
                    out.append(Skip(raw_name, f"{type(exc).__name__}: {exc}", "raw"))
        return out

    # -- floors ---------------------------------------------------------------------------------------
    def floor_cases(self) -> list[Case | Skip]:
        out: list[Case | Skip] = []
        claims = self.claims or {
            "sub": USER_ID,
            **SESSION_DATA,
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
            "jti": "x" * 22,
        }
        key = hashlib.sha256(b"kfbench hs256 key").digest()
        header = _b64e(b'{"alg":"HS256","typ":"JWT"}')
        body = _b64e(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{body}"
        token = f"{signing_input}.{_b64e(hmac.digest(key, signing_input.encode(), 'sha256'))}"
        self.hs_key, self.hs_token = key, token

        def floor_hs256() -> dict[str, Any]:
            h, p, s = token.split(".")
            if h != header:
                raise ValueError("alg")
            mac = hmac.digest(key, f"{h}.{p}".encode(), "sha256")
            if not hmac.compare_digest(mac, _b64d(s)):
                raise ValueError("signature")
            c: dict[str, Any] = json.loads(_b64d(p))
            if c["exp"] <= time.time():
                raise ValueError("expired")
            return c

        check(floor_hs256()["sub"] == claims["sub"], "floor HS256 did not verify")
        out.append(Case("floor_hs256", "floor", "HS256 verify by hand, stdlib only (floor)", floor_hs256))
        mac_input = signing_input.encode()
        sig = _b64d(token.rsplit(".", 1)[1])
        out.append(
            Case(
                "floor_hmac_sha256",
                "floor",
                "HMAC-SHA256 digest + compare_digest only",
                lambda: hmac.compare_digest(hmac.digest(key, mac_input, "sha256"), sig),
            )
        )
        out.append(
            Case(
                "floor_b64_json",
                "floor",
                "base64url decode + json.loads of the payload only",
                lambda: json.loads(_b64d(body)),
            )
        )
        out.append(self._jwe_floor())
        return out

    def _jwe_floor(self) -> Case | Skip:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        from cryptography.hazmat.primitives.padding import PKCS7

        if not self.jwe_token:
            return Skip("floor_jwe", "no keyfob jwt token was issued", "floor")
        salt = self.jwe_cookie
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=64,
            salt=salt.encode(),
            info=f"Auth.js Generated Encryption Key ({salt})".encode(),
        ).derive(SECRET.encode())
        self.jwe_key = key
        mac_key, aes = key[:32], algorithms.AES(key[32:])
        token = self.jwe_token

        def floor_jwe() -> dict[str, Any]:
            h, _ek, iv_b, ct_b, tag_b = token.split(".")
            iv, ct, tag = _b64d(iv_b), _b64d(ct_b), _b64d(tag_b)
            aad = h.encode("ascii")
            mac = hmac.digest(mac_key, aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), "sha512")[:32]
            if not hmac.compare_digest(mac, tag):
                raise ValueError("tag")
            d = Cipher(aes, modes.CBC(iv)).decryptor()
            u = PKCS7(128).unpadder()
            c: dict[str, Any] = json.loads(u.update(d.update(ct) + d.finalize()) + u.finalize())
            if c["exp"] <= time.time():
                raise ValueError("expired")
            return c

        check(floor_jwe()["sub"] == USER_ID, "the hand JWE decrypt did not read keyfob's jwt cookie")
        return Case(
            "floor_jwe", "floor", "JWE dir+A256CBC-HS512 decrypt by hand (cryptography) (floor)", floor_jwe
        )

    # -- peers ----------------------------------------------------------------------------------------
    def peer_cases(self) -> list[Case | Skip]:
        out: list[Case | Skip] = []
        aud = self.claims.get("aud")
        try:
            import jwt as pyjwt

            def pyjwt_decode() -> Any:
                return pyjwt.decode(self.hs_token, self.hs_key, algorithms=["HS256"], audience=aud)

            check(pyjwt_decode()["sub"] == USER_ID, "PyJWT did not decode")
            out.append(Case("pyjwt_hs256", "peer", f"PyJWT {pyjwt.__version__} HS256 decode", pyjwt_decode))
        except ImportError as exc:
            out.append(
                Skip("pyjwt_hs256", f"PyJWT is not installed ({exc}); pip install 'keyfob[bench]'", "peer")
            )
        try:
            import joserfc
            from joserfc import jwt as jjwt
            from joserfc.jwk import OctKey

            hs_key = OctKey.import_key(self.hs_key)
            registry = jjwt.JWTClaimsRegistry(leeway=30)

            def joserfc_hs256() -> Any:
                tok = jjwt.decode(self.hs_token, hs_key, algorithms=["HS256"])
                registry.validate(tok.claims)
                return tok.claims

            check(joserfc_hs256()["sub"] == USER_ID, "joserfc did not decode HS256")
            version = getattr(joserfc, "__version__", "")
            out.append(
                Case(
                    "joserfc_hs256",
                    "peer",
                    f"joserfc {version} HS256 decode + claims validate",
                    joserfc_hs256,
                )
            )
            if self.jwe_token:
                from joserfc.jwe import JWERegistry

                jwe_key = OctKey.import_key(self.jwe_key)
                jwe_registry = JWERegistry(algorithms=["dir", "A256CBC-HS512"])

                def joserfc_jwe() -> Any:
                    tok = jjwt.decode(self.jwe_token, jwe_key, registry=jwe_registry)
                    registry.validate(tok.claims)
                    return tok.claims

                check(joserfc_jwe()["sub"] == USER_ID, "joserfc did not decrypt keyfob's JWE")
                out.append(
                    Case(
                        "joserfc_jwe",
                        "peer",
                        f"joserfc {version} JWE dir+A256CBC-HS512 decrypt + claims validate",
                        joserfc_jwe,
                    )
                )
        except ImportError as exc:
            out.append(
                Skip("joserfc_jwe", f"joserfc is not installed ({exc}); pip install 'keyfob[bench]'", "peer")
            )
        try:
            import itsdangerous

            signer = itsdangerous.TimestampSigner(SECRET)
            cookie = signer.sign(base64.b64encode(json.dumps(self.claims).encode()))

            def itsdangerous_session() -> Any:  # starlette.middleware.sessions.SessionMiddleware, read side
                return json.loads(base64.b64decode(signer.unsign(cookie, max_age=14 * 86400)))

            check(itsdangerous_session()["sub"] == USER_ID, "itsdangerous did not unsign")
            out.append(
                Case(
                    "itsdangerous_session",
                    "peer",
                    f"itsdangerous {_version('itsdangerous')} (Starlette SessionMiddleware read)",
                    itsdangerous_session,
                )
            )
        except ImportError as exc:
            out.append(Skip("itsdangerous_session", f"itsdangerous is not installed ({exc})", "peer"))
        return out

    async def fastapi_users_cases(self) -> list[Case | Skip]:
        try:
            from ._fastapi_users import FUsers
        except ImportError as exc:
            reason = f"fastapi-users is not installed ({exc}); pip install 'fastapi-users[sqlalchemy]'"
            return [Skip("fastapi_users_jwt", reason, "peer"), Skip("fastapi_users_db", reason, "peer")]
        fu = FUsers(f"sqlite+aiosqlite:///{self.cfg.workdir}/fastapi_users.db")
        self.stores.closers.append(fu.close)
        jwt_token, db_token = await fu.setup()
        check(await fu.read_jwt(jwt_token) is not None, "fastapi-users JWT read_token found no user")
        check(await fu.read_db(db_token) is not None, "fastapi-users database read_token found no user")
        v = _version("fastapi-users")
        return [
            Case(
                "fastapi_users_jwt",
                "peer",
                f"fastapi-users {v} JWT strategy read_token (SQLAlchemy async + aiosqlite user lookup)",
                lambda: fu.read_jwt(jwt_token),
                is_async=True,
            ),
            Case(
                "fastapi_users_db",
                "peer",
                f"fastapi-users {v} database strategy read_token (SQLAlchemy async + aiosqlite)",
                lambda: fu.read_db(db_token),
                is_async=True,
            ),
        ]


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def _raw_name(store: str) -> str:
    return {"sqlite": "sqlite3", "postgres": "asyncpg", "redis": "redis"}[store]


async def wait_live(fob: Any, timeout: float = 10.0) -> bool:
    """Wait until a fob's revocation view is live (its feed connected and resynced)."""
    deadline = time.monotonic() + timeout
    while not fob.view.live:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _fob_case(name: str, group: str, label: str, fob: Any, cookies: dict[str, str]) -> Case:
    if fob.view.feed is not None and not await wait_live(fob):
        log(f"{name}: the revocation view is not live (feed down): measuring the store fallback")
    result = await fob.authenticate(cookies, secure=True)
    check(result.session is not None, f"{name}: authenticate refused the fresh session ({result.reason})")
    check(not result.cookies, f"{name}: authenticate wants to set cookies on a fresh session")

    def op() -> Awaitable[Any]:
        return fob.authenticate(cookies, secure=True)  # type: ignore[no-any-return]

    return Case(name, group, label, op, is_async=True)


def _waits_on_io(name: str) -> bool:
    """Cases that wait on a server (PostgreSQL, Redis) or on a driver thread (aiosqlite).

    Not the hybrid ones, whatever their store: their request path reads the in-memory view only
    (a run whose feed went down says so in ``notes``)."""
    if name.startswith("keyfob_hybrid_"):
        return False
    return any(k in name for k in ("postgres", "redis", "asyncpg", "fastapi_users"))


async def run_micro(cfg: Config, results: Results) -> None:
    """Build every case (skipping what cannot run, with the reason), run the rounds, record."""
    async with contextlib.AsyncExitStack() as stack:
        stores = Stores(cfg)
        stack.push_async_callback(stores.close)
        micro = Micro(cfg, stores)
        built: list[Case | Skip] = []
        log("micro: setting up keyfob sessions and stores")
        built += await micro.keyfob_cases()
        built += micro.floor_cases()
        built += micro.peer_cases()
        try:
            built += await micro.fastapi_users_cases()
        except Exception as exc:
            built += [
                Skip("fastapi_users_jwt", f"{type(exc).__name__}: {exc}", "peer"),
                Skip("fastapi_users_db", f"{type(exc).__name__}: {exc}", "peer"),
            ]
        cases = [c for c in built if isinstance(c, Case)]
        for case in cases:
            if _waits_on_io(case.name):
                continue
            # no I/O wait in these: time them in process CPU time (every thread of this process), which
            # other processes taking the shared cores do not move; the store round trips stay in wall time
            case.clock = time.process_time_ns
        for c in built:
            if isinstance(c, Skip):
                log(f"micro: skipped {c.name}: {c.reason}")
                results.add_skip(c)
        results.meta["stores"] = stores.describe()
        log(f"micro: {len(cases)} cases x {cfg.rounds} rounds (batches of ~{cfg.batch_ms:g} ms)")
        await run_rounds(cases, cfg)
        for c in cases:
            results.add_case(c)
        for key, fob in stores.fobs():
            if fob.view.feed is not None and not fob.view.live:
                results.notes.append(f"{key}: the revocation feed was down at the end of the micro rounds")


def run(cfg: Config, results: Results) -> None:
    """The ``micro`` group."""
    asyncio.run(run_micro(cfg, results))
