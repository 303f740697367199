"""HTTP: a protected FastAPI endpoint per strategy against its guarded floor (and the open endpoint).

Each app (:mod:`keyfob._bench.apps`) runs in its own ``uvicorn`` (httptools, uvloop) subprocess on a
free 127.0.0.1 port, with 1 and then 2 workers. Next to keyfob per strategy run the guarded floors
of :mod:`keyfob._bench.guards` (the same endpoint behind a stdlib HS256, a hand-JWE or a raw sqlite3
``Depends``) and a PyJWT-guarded endpoint, so ``http_<strategy>_vs_floor_guarded`` compares guards
of one kind; the open endpoint stays for the older ``http_*_vs_open`` ratios.

The load generator is ``wrk`` when it is installed (Debian's ``wrk``: C, one thread, far less CPU
taken from the servers on a 2-core machine than a Python client), else the in-repo one: an
``asyncio.Protocol`` per keep-alive HTTP/1.1 connection that writes a pre-built request and parses
just the status line and ``content-length``. ``--loadgen`` picks one. Per app: a warm-up, then a
timed run; apps are interleaved (rotating order) and repeated; req/s median/min/max and latency
p50/p99 (of the median-throughput run) are reported. Servers are always killed at the end.

The same servers, load generators and runner serve the WSGI groups (:mod:`keyfob._bench.wsgi`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

from ._core import Config, Results, log
from ._stores import Stores

__all__ = [
    "LoadResult",
    "Server",
    "Target",
    "fetch_cookies",
    "group_cpu_s",
    "load",
    "loadgen",
    "measure",
    "paired_ratio",
    "parse_wrk",
    "run_http",
    "run_targets",
]


@dataclass
class LoadResult:
    """One timed run of the load generator."""

    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    first_error: str = ""
    #: percentiles (0.5, 0.99) in ms when the generator reports them itself (wrk)
    pcts_ms: dict[float, float] = field(default_factory=dict)
    #: CPU seconds the server's processes used during the run (None: not measured)
    server_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def pct_ms(self, q: float) -> float | None:
        if q in self.pcts_ms:
            return self.pcts_ms[q]
        lat = sorted(self.latencies_ns)
        if not lat:
            return None
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6


class _Conn(asyncio.Protocol):
    """One keep-alive connection: send, read one response, repeat until the deadline."""

    def __init__(self, request: bytes, res: LoadResult, deadline: int, done: asyncio.Future[None]) -> None:
        self.req = request
        self.res = res
        self.deadline = deadline
        self.done = done
        self.buf = b""
        self.start = 0
        self.transport: asyncio.Transport | None = None
        self.last = 0
        self.finished = False  # the deadline passed, or the connection failed: do not reconnect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is not an asyncio.Transport subclass, but it is one in every way we use
        self.transport = cast(asyncio.Transport, transport)
        self.start = time.perf_counter_ns()
        self.transport.write(self.req)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        res = self.res
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            i = head.find(b"content-length:")
            if i < 0:
                self._fail("response without content-length")
                return
            j = head.find(b"\r\n", i)
            total = end + 4 + int(head[i + 15 : j if j >= 0 else end])
            if len(buf) < total:
                break
            now = time.perf_counter_ns()
            if buf[9:12] == b"200":
                res.requests += 1
                res.latencies_ns.append(now - self.start)
            else:
                res.errors += 1
                if not res.first_error:
                    res.first_error = buf[:total].decode("latin-1", "replace")[:300]
            self.last = now
            buf = buf[total:]
            if now >= self.deadline:
                self._finish()
                return
            if b"connection: close" in head:  # a sync server: one request per connection
                self.buf = b""
                return  # connection_lost follows; load() opens the next connection
            self.start = now
            assert self.transport is not None
            self.transport.write(self.req)
        self.buf = buf

    def _fail(self, why: str) -> None:
        if not self.res.first_error:
            self.res.first_error = why
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None and not self.res.first_error:
                self.res.first_error = f"connection lost: {exc}"
            self.done.set_result(None)


async def load(port: int, request: bytes, *, duration: float, concurrency: int) -> LoadResult:
    """Drive ``concurrency`` connections for ``duration`` seconds; return what came back.

    Connections are kept alive; when the server closes one (``Connection: close``, as a sync WSGI
    worker does after every response) the next request goes on a new connection."""
    loop = asyncio.get_running_loop()
    res = LoadResult()
    t0 = time.perf_counter_ns()
    deadline = t0 + int(duration * 1e9)
    conns: list[_Conn] = []

    async def slot() -> None:
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            proto = _Conn(request, res, deadline, fut)
            conns.append(proto)
            await loop.create_connection(lambda p=proto: p, "127.0.0.1", port)  # type: ignore[misc]
            await fut
            if (
                proto.finished
                or time.perf_counter_ns() >= deadline
                or res.first_error.startswith("connection lost")
            ):
                return

    await asyncio.wait_for(asyncio.gather(*(slot() for _ in range(concurrency))), timeout=duration + 30)
    last = max((c.last for c in conns), default=t0)
    res.elapsed_s = max(last - t0, 1) / 1e9
    return res


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out: str) -> LoadResult:
    """A :class:`LoadResult` from ``wrk --latency``'s report (requests are the 2xx/3xx ones)."""
    res = LoadResult()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if not m:
        res.first_error = "wrk printed no summary: " + out.strip()[-300:]
        return res
    total, res.elapsed_s = int(m.group(1)), float(m.group(2)) * _UNITS[m.group(3)] / 1e3
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res.errors = int(bad.group(1)) if bad else 0
    if bad:
        res.first_error = f"{bad.group(1)} non-2xx/3xx responses"
    if sock:
        # a sync (one request per connection) server's peer closing is a "read" error wrk counts;
        # only connect/write/timeout errors are failures
        failed = int(sock.group(1)) + int(sock.group(3)) + int(sock.group(4))
        res.errors += failed
        if failed and not res.first_error:
            res.first_error = sock.group(0)
    res.requests = total - (int(bad.group(1)) if bad else 0)
    for q, pat in ((0.5, "50%"), (0.99, "99%")):
        lm = re.search(rf"^\s*{pat}\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if lm:
            res.pcts_ms[q] = float(lm.group(1)) * _UNITS[lm.group(2)]
    return res


async def wrk(
    port: int, path: str, cookies: dict[str, str], *, duration: float, concurrency: int
) -> LoadResult:
    """One ``wrk`` run (one thread, ``concurrency`` connections, whole seconds) against 127.0.0.1."""
    cmd = [
        shutil.which("wrk") or "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        "User-Agent: kfbench",
    ]
    if cookies:
        cmd += ["-H", "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items())]
    proc = await asyncio.create_subprocess_exec(
        *cmd, f"http://127.0.0.1:{port}{path}", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=duration + 60)
    return parse_wrk(out.decode("utf-8", "replace"))


def loadgen(cfg: Config) -> str:
    """``wrk`` or ``python``: what ``cfg.http_loadgen`` resolves to on this machine."""
    if cfg.http_loadgen == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if cfg.http_loadgen == "wrk" and not shutil.which("wrk"):
        log(
            "http: --loadgen wrk, but wrk is not installed (apt-get install wrk): using the in-repo generator"
        )
        return "python"
    return cfg.http_loadgen


async def measure(
    gen: str, port: int, path: str, cookies: dict[str, str], *, duration: float, concurrency: int
) -> LoadResult:
    """One timed run with the chosen generator."""
    if gen == "wrk":
        return await wrk(port, path, cookies, duration=duration, concurrency=concurrency)
    return await load(port, _request(port, path, cookies), duration=duration, concurrency=concurrency)


def _request(port: int, path: str, cookies: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: kfbench", "Accept: */*"]
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_s(pgid: int) -> float | None:
    """CPU seconds (user + system) used so far by every live process in process group ``pgid``.

    A server is started in its own session, so its group is its master and workers: their CPU per
    request does not depend on how busy the machine's other processes keep the cores."""
    total = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for d in names:
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """One server subprocess: uvicorn (an ASGI factory) or gunicorn (a WSGI factory call)."""

    name: str
    conf: dict[str, Any]
    workers: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    app: str = "keyfob._bench.apps:factory"  # uvicorn --factory target; KFBENCH_APP is its config
    kind: str = "uvicorn"  # "uvicorn" | "gunicorn" (``app`` is then "module:factory()")

    def start(self, workdir: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "KFBENCH_APP": json.dumps(self.conf), "PYTHONWARNINGS": "ignore"}
        self.log_path = os.path.join(workdir, f"{self.kind}-{self.name}-{self.workers}.log")
        if self.kind == "gunicorn":
            cmd = [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(self.workers),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                "--backlog",
                "256",
                self.app,
            ]
        else:
            cmd = self._uvicorn()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def _uvicorn(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ]

    def tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-600:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


async def _get(port: int, request: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        return status, body.decode("utf-8", "replace")[:200]
    finally:
        writer.close()


#: the name tests/integrations/test_propagation.py imports (it starts two hybrid nodes with it)
_Server = Server


async def fetch_cookies(port: int, path: str) -> dict[str, str]:
    """GET ``path`` once and return the cookies its ``Set-Cookie`` headers set (a browser signing in)."""
    from http.cookies import SimpleCookie

    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(_request(port, path, {}))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    if head[9:12] != b"200":
        raise RuntimeError(f"GET {path} answered {head[9:12].decode()}: cannot sign in")
    jar: SimpleCookie = SimpleCookie()
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            jar.load(line.split(":", 1)[1].strip())
    if not jar:
        raise RuntimeError(f"GET {path} set no cookie")
    return {k: m.value for k, m in jar.items()}


async def _wait_ready(server: Server, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    req = _request(server.port, "/health", {})
    while True:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited ({server.proc.returncode}): {server.tail()}")
        with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            if (await _get(server.port, req))[0] == 200:
                return
        if time.monotonic() > end:
            raise RuntimeError(f"{server.kind} did not become ready in {timeout:g} s: {server.tail()}")
        await asyncio.sleep(0.1)


@dataclass
class Target:
    """One measured endpoint: a server, a path and the cookies a signed-in browser would send."""

    name: str
    server: str
    path: str
    cookies: dict[str, str]
    label: str
    #: a path that signs in and sets the cookies (fetched once the server is up), for sessions the
    #: parent cannot create itself (a framework's own session)
    login: str | None = None


#: servers the smoke run leaves out (every uvicorn start costs a second of CPU on a loaded machine)
_SMOKE_SKIPS = {
    name: "not run in --smoke (the same guard app answers in the asgi group; one guard server is enough here)"
    for name in ("floor_jwe", "floor_sqlite")
}

_ORDER = (
    "open",
    "open_keyfob_mw",
    "hybrid",
    "floor_hs256",
    "pyjwt",
    "jwt",
    "floor_jwe",
    "db_sqlite",
    "floor_sqlite",
    "db_postgres",
    "db_redis",
    "fastapi_users",
)


async def _prepare(
    cfg: Config, stores: Stores
) -> tuple[dict[str, dict[str, Any]], list[Target], dict[str, str]]:
    """Server configs, targets, and reasons for what cannot run."""
    from . import guards

    servers: dict[str, dict[str, Any]] = {"open": {"kind": "open"}}
    targets = [Target("open", "open", "/p", {}, "FastAPI, open (no keyfob)")]
    skipped: dict[str, str] = {}
    small = cfg.scale_sizes[0]
    plan = [
        ("jwt", "jwt", "sqlite", None),
        ("hybrid", "hybrid", "redis", None),
        ("db_sqlite", "database", "sqlite", small),
        ("db_postgres", "database", "postgres", small),
        ("db_redis", "database", "redis", small),
    ]
    made: dict[str, dict[str, str]] = {}
    for name, strategy, store, fill in plan:
        try:
            _fob, cookies = await stores.session(strategy, store, fill)
        except Exception as exc:
            if name == "hybrid":  # no Redis: hybrid on SQLite (single node, no feed needed)
                try:
                    _fob, cookies = await stores.session(strategy, "sqlite", None)
                    store = "sqlite"
                except Exception as exc2:
                    skipped[name] = f"{type(exc2).__name__}: {exc2}"
                    continue
            else:
                skipped[name] = f"{type(exc).__name__}: {exc}"
                continue
        made[name] = cookies
        conf = {
            "kind": "keyfob",
            "strategy": strategy,
            "store": store,
            **stores.server_conf(strategy, store, fill),
        }
        servers[name] = conf
        targets.append(Target(name, name, "/p", cookies, f"FastAPI + keyfob {strategy} ({store})"))
        if name == "jwt":
            targets.append(
                Target(
                    "open_keyfob_mw",
                    "jwt",
                    "/open",
                    {},
                    "FastAPI + keyfob middleware, unprotected route, no cookie",
                )
            )
    # the guarded floors (and PyJWT), each reading what a browser signed in to keyfob would send
    hs_conf, hs_cookies = guards.hs256_conf(
        guards.access_claims(made["hybrid"]) if "hybrid" in made else None
    )
    floors: list[tuple[str, dict[str, Any] | None, dict[str, str], str]] = [
        ("floor_hs256", hs_conf, hs_cookies, "FastAPI + stdlib HS256 Depends (floor for signed tokens)"),
        (
            "floor_jwe",
            guards.jwe_conf(made["jwt"]) if "jwt" in made else None,
            made.get("jwt", {}),
            "FastAPI + hand JWE dir+A256CBC-HS512 Depends (floor for encrypted cookies)",
        ),
        (
            "floor_sqlite",
            guards.sqlite_conf(stores.sqlite_paths[("database", small)], made["db_sqlite"])
            if "db_sqlite" in made
            else None,
            made.get("db_sqlite", {}),
            "FastAPI + stdlib sqlite3 SHA-256(token) lookup Depends (database floor)",
        ),
        ("pyjwt", hs_conf, hs_cookies, "FastAPI + PyJWT HS256 Depends"),
    ]
    for name, guard_conf, cookies, label in floors:
        if cfg.mode == "smoke" and name in _SMOKE_SKIPS:
            skipped[name] = _SMOKE_SKIPS[name]
            continue
        if guard_conf is None:
            skipped[name] = "the keyfob session it reads could not be made"
            continue
        servers[name] = {"kind": name, **guard_conf}
        targets.append(Target(name, name, "/p", cookies, label))
    try:
        from ._fastapi_users import COOKIE, FUsers

        url = f"sqlite+aiosqlite:///{cfg.workdir}/fastapi_users_http.db"
        fu = FUsers(url)
        jwt_token, _db_token = await fu.setup()
        await fu.close()
        servers["fastapi_users"] = {"kind": "fastapi_users", "url": url}
        targets.append(
            Target(
                "fastapi_users",
                "fastapi_users",
                "/p",
                {COOKIE: jwt_token},
                "FastAPI + fastapi-users JWT cookie backend (SQLAlchemy async, aiosqlite)",
            )
        )
    except Exception as exc:
        skipped["fastapi_users"] = f"{type(exc).__name__}: {exc}"
    # each keyfob endpoint next to its floor in the run order (rounds rotate and reverse it, so the
    # pairs stay neighbours and their per-round ratios compare the machine in the same state)
    order = {n: i for i, n in enumerate(_ORDER)}
    targets.sort(key=lambda t: order.get(t.name, len(order)))
    return servers, targets, skipped


async def run_targets(
    cfg: Config,
    servers: dict[str, Server],
    targets: list[Target],
    out: dict[str, Any],
    *,
    label: str,
    duration: float,
    warmup: float,
    concurrency: int,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Start ``servers``, check every target answers 200, then interleaved timed rounds; kill them.

    Returns ``{target: summary}``; a target that cannot run goes to ``out["skipped"][f"{name}_{label}"]``."""
    gen = loadgen(cfg)
    try:
        for s in servers.values():
            s.start(cfg.workdir)
        live: list[Target] = []
        for t in targets:
            s = servers[t.server]
            try:
                await _wait_ready(s)
                if t.login:
                    t.cookies = await fetch_cookies(s.port, t.login)
                status, body = await _get(s.port, _request(s.port, t.path, t.cookies))
                if status != 200:
                    raise RuntimeError(f"GET {t.path} answered {status}: {body}")
                live.append(t)
            except Exception as exc:
                out["skipped"][f"{t.name}_{label}"] = f"{type(exc).__name__}: {exc}"
                log(f"{label}: {t.name} cannot run: {exc}")
        runs: dict[str, list[LoadResult]] = {t.name: [] for t in live}
        log(
            f"{label}: {len(live)} endpoints x {rounds} round(s), {duration:g} s each, "
            f"{concurrency} connections, load generator {gen}"
        )
        for r in range(rounds):
            order = live[r % len(live) :] + live[: r % len(live)] if live else []
            if r % 2:
                order.reverse()
            for t in order:
                s = servers[t.server]
                if warmup > 0 and r == 0:  # servers warm once; later rounds go straight to the timed run
                    await measure(gen, s.port, t.path, t.cookies, duration=warmup, concurrency=concurrency)
                pid = s.proc.pid if s.proc is not None else 0
                cpu0 = group_cpu_s(pid)
                res = await measure(
                    gen, s.port, t.path, t.cookies, duration=duration, concurrency=concurrency
                )
                cpu1 = group_cpu_s(pid)
                if cpu0 is not None and cpu1 is not None:
                    res.server_cpu_s = cpu1 - cpu0
                runs[t.name].append(res)
        return {name: _summary(rs) for name, rs in runs.items()}
    finally:
        for s in servers.values():
            s.kill()


async def _run(cfg: Config, results: Results) -> None:
    stores = Stores(cfg)
    gen = loadgen(cfg)
    out: dict[str, Any] = {
        "concurrency": cfg.http_concurrency,
        "duration_s": cfg.http_duration if gen == "python" else max(1, round(cfg.http_duration)),
        "warmup_s": cfg.http_warmup if gen == "python" else max(1, round(cfg.http_warmup)),
        "rounds": cfg.http_rounds,
        "loadgen": gen,
        "runs": {},
        "skipped": {},
        "labels": {},
    }
    try:
        server_confs, targets, skipped = await _prepare(cfg, stores)
        out["skipped"].update(skipped)
        out["labels"] = {t.name: t.label for t in targets}
        for workers in cfg.http_workers:
            picked = targets
            used = {t.server for t in picked}
            servers = {
                name: Server(name, conf, workers) for name, conf in server_confs.items() if name in used
            }
            out["runs"][f"w{workers}"] = await run_targets(
                cfg,
                servers,
                picked,
                out,
                label=f"w{workers}",
                duration=cfg.http_duration,
                warmup=cfg.http_warmup,
                concurrency=cfg.http_concurrency,
                # the 1-worker pass carries the targets; the 2-worker pass (kept for the older
                # *_w2 ratios) gets fewer rounds to keep the whole run near ten minutes
                rounds=cfg.http_rounds if workers == 1 else max(1, (cfg.http_rounds + 1) // 2),
            )
    finally:
        await stores.close()
    results.http = out


def _summary(runs: list[LoadResult]) -> dict[str, Any]:
    rps = sorted(r.rps for r in runs)
    mid = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    errors = sum(r.errors for r in runs)
    out: dict[str, Any] = {
        "rps": round(statistics.median(rps), 1),
        "rps_min": round(rps[0], 1),
        "rps_max": round(rps[-1], 1),
        "p50_ms": _r(mid.pct_ms(0.50)),
        "p99_ms": _r(mid.pct_ms(0.99)),
        "requests": sum(r.requests for r in runs),
        "errors": errors,
        "rps_rounds": [round(r.rps, 1) for r in runs],  # in round order, for paired ratios
    }
    cpu = [r.requests / r.server_cpu_s for r in runs if r.server_cpu_s and r.requests]
    if len(cpu) == len(runs):
        # req/s per CPU-second of the server: what one core would serve, whatever else ran
        out["rps_cpu"] = round(statistics.median(cpu), 1)
        out["rps_cpu_rounds"] = [round(x, 1) for x in cpu]
        out["cpu_us_per_request"] = round(1e6 / statistics.median(cpu), 1)
    if errors:
        out["first_error"] = next(r.first_error for r in runs if r.first_error)
    return out


def paired_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str = "rps") -> float | None:
    """``key`` (req/s, or req/s per server CPU-second) of ``a`` over ``b``: the median over rounds of
    each round's ratio (the two endpoints ran next to each other in the run order), else of the medians."""
    if not a or not b or a.get(key) is None or not b.get(key):
        return None
    ra, rb = a.get(f"{key}_rounds") or [], b.get(f"{key}_rounds") or []
    if ra and len(ra) == len(rb) and all(rb):
        return float(statistics.median(x / y for x, y in zip(ra, rb, strict=True)))
    return float(a[key]) / float(b[key])


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run_http(cfg: Config, results: Results) -> None:
    """The HTTP phase, in one (uvloop, when installed) event loop of this process."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        results.http = {"skipped": f"uvicorn is not installed ({exc}); pip install 'keyfob[bench]'"}
        return
    factory: Any = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_run(cfg, results))
