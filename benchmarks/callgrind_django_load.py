"""Instructions per ``SessionStore.load()`` of ``keyfob.django.session_backend`` on SQLite: with the
store's plain lookup (``get_sync``) and without it (``home.run(store.get(...))``), under callgrind::

    PYTHONPATH=$PWD/src valgrind --tool=callgrind --dump-instr=no --dump-before=getppid \\
        --callgrind-out-file=/tmp/cg/cg.out.%p /work/main/.venv/bin/python \\
        benchmarks/callgrind_django_load.py 500
    grep -m1 summary /tmp/cg/cg.out.*.2 /tmp/cg/cg.out.*.4   # get_sync, home.run: divide by 500

Dumps 2 and 4 hold exactly the measured loads of each variant (each is warmed first). 2026-12-02:
106k instructions a load with ``get_sync``, 187k without.
"""

from __future__ import annotations

import os
import sys
import tempfile


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    tmp = tempfile.mkdtemp()
    from django.conf import settings

    import django

    settings.configure(
        SECRET_KEY="bench-" + "x" * 60, USE_TZ=True, ALLOWED_HOSTS=["*"], MIDDLEWARE=[],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": os.path.join(tmp, "db.sqlite3")}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                        "keyfob.django"],
        KEYFOB={"SECRET": "kf-bench-secret-0123456789abcdef0123456789abcdef0123456789ab",
                "STORE": f"sqlite:///{tmp}/kf.db"},
        SESSION_ENGINE="keyfob.django.session_backend",
    )
    django.setup()
    from keyfob.django import conf
    from keyfob.django.session_backend import SessionStore

    s = SessionStore()
    s["n"] = 1
    s.save()
    key = s.session_key

    def loads() -> None:
        for _ in range(n):
            SessionStore(key).load()

    loads()
    plain = conf.sync_get()
    assert plain is not None, "the SQLite store offers get_sync"
    for name, reader in (("get_sync", plain), ("home.run", None)):
        conf._state.sync_get = reader
        loads()  # warm this variant
        os.getppid()
        loads()
        os.getppid()
        print(f"{name}: {n} loads", file=sys.stderr)


if __name__ == "__main__":
    main()
