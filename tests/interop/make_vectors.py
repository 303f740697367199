"""Regenerate tests/fixtures/authjs_vectors.json from the real Auth.js packages.

    npm ci --prefix tests/interop && .venv/bin/python tests/interop/make_vectors.py

Each vector holds a token the real @auth/core (v5) or next-auth@4 wrote, the secret(s) and
salt it was written with, the payload Auth.js itself decodes from it, and a ``now`` inside its
validity, so tests/unit can pin the format with no Node at all.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

HERE = pathlib.Path(__file__).parent
OUT = HERE.parent / "fixtures" / "authjs_vectors.json"
SCRIPT = HERE / "authjs.mjs"

CASES: list[dict[str, Any]] = [
    {
        "name": "v5 default cookie name",
        "version": 5,
        "secret": "kf-vector-secret-one-0123456789abcdef",
        "salt": "authjs.session-token",
        "payload": {"name": "Ada Lovelace", "email": "ada@example.com", "picture": None, "sub": "user-1"},
    },
    {
        "name": "v5 __Secure- cookie, non-ASCII claims",
        "version": 5,
        "secret": "kf-vector-secret-two-fedcba9876543210",
        "salt": "__Secure-authjs.session-token",
        "payload": {"sub": "user-2", "name": "Zoë Ørsted 🔑", "roles": ["admin", "staff"], "n": 1.5},
    },
    {
        "name": "v5 rotation: written with the newest of two",
        "version": 5,
        "secret": ["kf-vector-new-secret-aaaaaaaaaaaaaaaa", "kf-vector-old-secret-bbbbbbbbbbbbbbbb"],
        "salt": "__Host-authjs.session-token",
        "payload": {"sub": "user-3"},
    },
    {
        "name": "v4 next-auth cookie",
        "version": 4,
        "secret": "kf-vector-v4-secret-cccccccccccccccc",
        "salt": "",
        "payload": {"name": "Grace Hopper", "email": "grace@example.com", "sub": "user-4"},
    },
]


def node(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def main() -> None:
    encoded = node(
        [
            {
                "op": "encode" if c["version"] == 5 else "encode_v4",
                "payload": c["payload"],
                "secret": c["secret"],
                "salt": c["salt"],
                "maxAge": 30 * 86400,
            }
            for c in CASES
        ]
    )
    decoded = node(
        [
            {
                "op": "decode" if c["version"] == 5 else "decode_v4",
                "token": e["token"],
                "secret": c["secret"],
                "salt": c["salt"],
            }
            for c, e in zip(CASES, encoded, strict=True)
        ]
    )
    vectors = []
    for c, e, d in zip(CASES, encoded, decoded, strict=True):
        payload = d["payload"]
        vectors.append(
            {
                "name": c["name"],
                "version": c["version"],
                "secret": c["secret"],
                "salt": c["salt"],
                "token": e["token"],
                "payload": payload,
                "now": payload["iat"] + 60,
            }
        )
    doc = {
        "generator": "tests/interop/make_vectors.py (@auth/core/jwt encode, next-auth/jwt encode)",
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()
