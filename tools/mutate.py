"""First-order mutation testing of keyfob's decision modules (run on demand, not in CI).

    PYTHONPATH=src python tools/mutate.py [FILE ...] [--tests "pytest args"] [--limit N] [--start N]
                                          [--only LINE:KIND]

For each mutant — a comparison flipped (``<`` ↔ ``<=``, ``==`` ↔ ``!=``, ``in`` ↔ ``not in``, ``is`` ↔
``is not``), an ``if``/``while`` condition negated, ``and`` ↔ ``or``, a ``raise`` deleted, a ``return``
value replaced by ``None`` — the module is rewritten in place, the selected tests run, and the
original is restored. A mutant is killed when the tests fail (or time out). Survivors are printed
with their line so each can be judged: a behaviour the tests miss, or an equivalent mutant.

Each mutant's pytest runs in a child forked from this process, which has imported pytest and the
third-party libraries the tests use (never keyfob), so a mutant costs its tests, not the imports;
``--no-fork`` runs a fresh interpreter per mutant instead. Judged survivors: ``tools/MUTATION.md``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = [
    "src/keyfob/strategies/_revocation.py",
    "src/keyfob/strategies/_lifetimes.py",
    "src/keyfob/stores/_protocol.py",
    "src/keyfob/strategies/database.py",
    "src/keyfob/strategies/jwt.py",
    "src/keyfob/strategies/hybrid.py",
    "src/keyfob/strategies/_stored.py",
    "src/keyfob/strategies/_access.py",
    "src/keyfob/tokens/_parse.py",
    "src/keyfob/web/_request.py",
    "src/keyfob/web/csrf.py",
    "src/keyfob/web/_routes.py",
]
DEFAULT_TESTS = ("tests/unit tests/contract/test_strategy_contract.py tests/contract/test_hybrid_contract.py "
                 "tests/contract/test_database_contract.py tests/contract/test_decision_edges_contract.py "
                 "-k 'not postgresql and not redis and not sqlite'")

_COMMON = "-x -q -p no:cacheprovider"
_FORKED = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]  # the preloaded plugins are not rewritten
_EDGES = ("tests/contract/test_decision_edges_contract.py tests/contract/test_decision_pins_contract.py "
          "tests/contract/test_strategy_contract.py")
_MEM = "not sqlite and not postgresql and not redis"  # the memory store, and every unit test
_TOKENS = ("tests/unit/test_token_parsing.py tests/unit/test_tokens_parse.py tests/unit/test_tokens_jws.py "
           "tests/unit/test_tokens_authjs.py")
_WEB = ("tests/unit/test_csrf.py tests/unit/test_cookies.py tests/http_contract "
        "-k 'hybrid or not (jwt or database)'")
# The request core and the /auth routes: Starlette (ASGI) and Flask (WSGI) adapters, hybrid (the strategy
# with a refresh token), and the core driven directly; a survivor is re-run with _WEB + the integrations.
_CORE = ("tests/unit/test_request_core.py tests/http_contract/test_http_contract.py "
         "tests/http_contract/test_session_policy_http.py tests/http_contract/test_request_core_http.py "
         "tests/http_contract/test_auth_routes_http.py -k 'not (django or fastapi or jwt or database)'")
#: The tests that cover each module (fast: memory store only); --tests overrides them for every file.
TARGETED = {
    "src/keyfob/strategies/_revocation.py":
        f"tests/unit/test_revocation_view.py {_EDGES} tests/contract/test_hybrid_contract.py -k '{_MEM}'",
    "src/keyfob/strategies/_lifetimes.py": f"tests/unit/test_lifetimes.py {_EDGES} -k '{_MEM}'",
    "src/keyfob/stores/_protocol.py": f"tests/unit/test_lifetimes.py {_EDGES} -k '{_MEM}'",
    "src/keyfob/strategies/database.py":
        f"{_EDGES} tests/contract/test_database_contract.py -k '{_MEM} and not jwt and not hybrid'",
    "src/keyfob/strategies/jwt.py": f"{_EDGES} -k '{_MEM} and not database and not hybrid'",
    "src/keyfob/strategies/hybrid.py": f"{_EDGES} tests/contract/test_hybrid_contract.py -k '{_MEM}'",
    "src/keyfob/strategies/_stored.py": f"{_EDGES} tests/contract/test_database_contract.py -k '{_MEM}'",
    "src/keyfob/strategies/_access.py": f"{_EDGES} tests/unit/test_verifier.py -k '{_MEM}'",
    "src/keyfob/tokens/_parse.py": _TOKENS,
    "src/keyfob/tokens/_jws.py": _TOKENS,
    "src/keyfob/tokens/_authjs.py": _TOKENS,
    "src/keyfob/web/_request.py": _CORE,
    "src/keyfob/web/csrf.py": _WEB,
    "src/keyfob/web/_routes.py": _CORE,
}

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}


def _skip(node: ast.AST) -> bool:
    """Docstrings, ``__all__``, type-only code: nothing behaviour-bearing to mutate."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def mutations(tree: ast.Module) -> Iterator[tuple[int, str, int]]:
    """(node index in ast.walk order, kind, line) for every mutant of ``tree``."""
    for i, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in _FLIP:
                    yield i, f"flip{j}", line
        elif isinstance(node, ast.If | ast.While) and not _skip(node):
            yield i, "negate", line
        elif isinstance(node, ast.BoolOp):
            yield i, "andor", line
        elif isinstance(node, ast.Raise):
            yield i, "noraise", line
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            yield i, "retnone", line


def apply(tree: ast.Module, index: int, kind: str) -> ast.Module:
    tree = copy.deepcopy(tree)
    parents: dict[ast.AST, tuple[ast.AST, str, int | None]] = {}
    nodes = list(ast.walk(tree))
    for parent in nodes:
        for name, value in ast.iter_fields(parent):
            if isinstance(value, list):
                for k, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        parents[child] = (parent, name, k)
            elif isinstance(value, ast.AST):
                parents[value] = (parent, name, None)
    node = nodes[index]
    if kind.startswith("flip"):
        assert isinstance(node, ast.Compare)
        j = int(kind[4:])
        node.ops[j] = _FLIP[type(node.ops[j])]()
    elif kind == "negate":
        assert isinstance(node, ast.If | ast.While)
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
    elif kind == "andor":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "noraise":
        parent, name, k = parents[node]
        assert k is not None
        getattr(parent, name)[k] = ast.Pass()
    elif kind == "retnone":
        assert isinstance(node, ast.Return)
        node.value = ast.Constant(value=None)
    return ast.fix_missing_locations(tree)


#: Third-party modules imported once, before forking (never keyfob: the child imports the mutant).
PRELOAD = ["pytest", "anyio", "anyio.pytest_plugin", "hypothesis", "_hypothesis_pytestplugin", "httpx",
           "cryptography.hazmat.primitives.ciphers.aead", "starlette.testclient", "fastapi", "flask",
           "schemathesis", "redis.asyncio", "asyncpg"]


def _preload() -> None:
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
    assert not any(m == "keyfob" or m.startswith(("keyfob.", "tests")) for m in sys.modules)


def _run_forked(pytest_args: list[str], timeout: float) -> int:
    """pytest.main(pytest_args) in a forked child; its exit status, or -1 on timeout."""
    pid = os.fork()
    if pid == 0:  # the child: quiet, no bytecode written for the mutant, exit without cleanup
        rc = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            rc = int(pytest.main(pytest_args))
        finally:
            os._exit(rc)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.05)


def _run(pytest_args: list[str], fork: bool, env: dict[str, str], timeout: float) -> int:
    if fork:
        return _run_forked([*pytest_args, *_FORKED], timeout)
    try:
        return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env,
                              capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", default=DEFAULT_FILES)
    ap.add_argument("--tests", default=None,
                    help="pytest arguments for every file (default: the file's TARGETED tests)")
    ap.add_argument("--limit", type=int, default=0, help="at most N mutants per file (0: all)")
    ap.add_argument("--start", type=int, default=0,
                    help="skip each file's first N mutants (resume a stopped run: N = the lines it printed)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--only", action="append", default=[], metavar="LINE:KIND",
                    help="only these mutants (as printed, e.g. 24:andor); repeatable")
    ap.add_argument("--no-fork", dest="fork", action="store_false",
                    help="a fresh interpreter per mutant (slower; the default forks a preloaded one)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # restore the module being mutated on kill
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    if args.fork:
        os.chdir(ROOT)
        sys.path.insert(0, str(ROOT / "src"))
        sys.dont_write_bytecode = True
        os.environ.update(env)
        _preload()
    total = killed = 0
    survivors: list[str] = []
    for rel in args.files:
        tests = args.tests or TARGETED.get(rel, DEFAULT_TESTS)
        pytest_args = [*shlex.split(tests), *shlex.split(_COMMON)]
        if _run(pytest_args, args.fork, env, 3600.0) != 0:
            print(f"{rel}: its tests fail before any mutation: fix them first", file=sys.stderr)
            return 2
        path = ROOT / rel
        original = path.read_text()
        tree = ast.parse(original)
        muts = list(mutations(tree))
        if args.only:
            muts = [m for m in muts if f"{m[2]}:{m[1]}" in args.only]
        muts = muts[args.start:]
        if args.limit:
            muts = muts[: args.limit]
        try:
            for index, kind, line in muts:
                path.write_text(ast.unparse(apply(tree, index, kind)) + "\n")
                started = time.monotonic()
                rc = _run(pytest_args, args.fork, env, args.timeout)
                total += 1
                if rc != 0:
                    killed += 1
                    print(f"killed   {rel}:{line} {kind}", flush=True)
                else:
                    survivors.append(f"{rel}:{line} {kind}")
                    print(f"SURVIVED {rel}:{line} {kind} ({time.monotonic() - started:.1f}s)", flush=True)
        finally:
            path.write_text(original)
        print(f"{rel}: {len(muts)} mutants", flush=True)
    score = killed / total if total else 1.0
    print(f"\n{killed}/{total} mutants killed ({score:.0%}); {len(survivors)} survived:")
    for s in survivors:
        print("  " + s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
