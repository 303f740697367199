"""The Redis key layout: which key lives in which Cluster slot, and why.

Every multi-key step is one Lua script over keys of **one hash tag** (so one Cluster slot), and no
key holds everything of a kind. ``P`` is the prefix (default ``kf:``; braces are not allowed in it).

Per user — tag ``{u:<user id>}``, so a user's sessions are counted, capped, rotated and revoked
atomically in one slot (``U`` = ``P{u:<escaped user id>}``):

| key | type | holds |
|---|---|---|
| ``U:s:<token hash hex>`` | hash | one session row (short field names, ``_store._fields``); TTL: its end |
| ``U:a`` | set | the user's token hashes (hex) |
| ``U:i:<session id>`` | set | the token hashes of one session (live + retired refresh tokens) |

Routing pointers — one small string per token and per session id, each in its own slot, so a
lookup by token (or by session id) goes straight to the user's slot without a scan:

| key | value | TTL |
|---|---|---|
| ``P t:<token hash hex>`` | ``U`` | the row's |
| ``P d:<session id>`` | ``U`` | the longest of the session's rows |

A pointer is never the truth: it is written before the row and removed after it, so a stray
pointer only ever leads to a missing row (``get`` → None).

Per shard — ``SHARDS`` (16) tags, key base ``S`` = ``P{P<n>}``; a revocation lives in the shard of
its session id, a version in the shard of its user id, a row's expiry entry in the shard of its token hash:

| key | type | holds |
|---|---|---|
| ``S:r`` | sorted set | revoked session id → until |
| ``S:v`` | hash | user id → token version (never removed: a version never goes down) |
| ``S:vh`` | sorted set | user id → its version's horizon (``+inf``: forever); what ``user_versions`` lists |
| ``S:c`` | sorted set | change log: ``<global seq>|<event JSON>`` → the shard's own sequence number |
| ``S:ch`` | sorted set | the same members → their horizon (``until``; ``+inf`` = kept forever) |
| ``S:cs`` | string | the shard's sequence (commit order within the shard: what a cursor follows) |
| ``S:x`` | sorted set | ``<token hash hex>\\t<U>`` → end of life of the row (``delete_expired``) |
| ``S:epoch`` | string | this shard's part of the store epoch (``SET NX`` at ``migrate``) |

Plus ``P seq`` (a counter: the global order of change-log entries, so ``changes()`` returns them
oldest first across shards — a number, not a collection), ``P meta`` (layout version).

Every change-log entry expires at its horizon (``delete_expired`` prunes it), so reading the log
from the start gives the whole current state, and a cursor older than the oldest kept entry loses
nothing. A cursor is one position per shard: a write that commits late on one shard is still read.
"""

from __future__ import annotations

import zlib

__all__ = ["SHARDS", "Keys"]

SHARDS = 16


def _escape(user_id: str) -> str:
    # braces would end (or start) the hash tag early; % escapes itself so the mapping stays one-to-one
    return user_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class Keys:
    """Key names for one prefix (see the module docstring)."""

    __slots__ = ("meta", "prefix", "seq", "shard_tags")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.meta = f"{prefix}meta"
        self.seq = f"{prefix}seq"
        self.shard_tags = tuple(f"{prefix}{{{prefix}{n}}}" for n in range(SHARDS))

    def user(self, user_id: str) -> str:
        """``U``: the base of every key of this user (one hash tag)."""
        return f"{self.prefix}{{u:{_escape(user_id)}}}"

    def token_pointer(self, hex_hash: str) -> str:
        return f"{self.prefix}t:{hex_hash}"

    def session_pointer(self, session_id: str) -> str:
        return f"{self.prefix}d:{session_id}"

    @staticmethod
    def shard_of(name: str) -> int:
        return zlib.crc32(name.encode()) % SHARDS

    def shard(self, name: str) -> str:
        """The shard key base ``S`` that holds ``name``'s revocation / version / expiry entry."""
        return self.shard_tags[zlib.crc32(name.encode()) % SHARDS]
