"""The Lua scripts: each runs on the keys of one hash tag (one Cluster slot), atomically.

User scripts get ``ARGV[1]`` = ``U`` (the user's key base, ``_keys.Keys.user``) and declare the
user's index keys in ``KEYS``; the row keys they discover in those indexes (``U:s:<hex>``) share the
tag, so they are in the same slot. Shard scripts declare every key they touch.

Live = the strategies' rule (``keyfob.stores._protocol.is_live``), with the same float comparisons;
evictions least recently active first (``eviction_key``: last seen, created, id).
"""

from __future__ import annotations

__all__ = [
    "ADD",
    "ADD_LIMITED",
    "APPEND_CHANGE",
    "BUMP",
    "DELETE",
    "DELETE_USER",
    "DROP_EXPIRED",
    "GET_BY_ID",
    "GET_BY_POINTER",
    "LIST_USER",
    "LIVENESS_LUA",
    "PRUNE",
    "RAISE_VERSION",
    "READ_CHANGES",
    "REPLACE",
    "REVOKE",
    "SET_DATA",
    "TOUCH",
]

_USER_LIB = r"""
local U = ARGV[1]
local A = U .. ':a'
local function extend(k, ttl)
  if redis.call('PTTL', k) == -1 then redis.call('PEXPIRE', k, ttl)
  else redis.call('PEXPIRE', k, ttl, 'GT') end
end
local function drop(hex)
  local k = U .. ':s:' .. hex
  local f = redis.call('HMGET', k, 'i', 'r')
  redis.call('SREM', A, hex)
  if not f[1] then return nil end
  redis.call('DEL', k)
  redis.call('SREM', U .. ':i:' .. f[1], hex)
  return f
end
local function add(base)
  local hex, sid, ttl = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2])
  local k = U .. ':s:' .. hex
  if redis.call('EXISTS', k) == 1 then return 0 end
  local fields = {}
  for n = base + 3, #ARGV do fields[#fields + 1] = ARGV[n] end
  redis.call('HSET', k, unpack(fields))
  redis.call('PEXPIRE', k, ttl)
  redis.call('SADD', A, hex)
  extend(A, ttl)
  local ik = U .. ':i:' .. sid
  redis.call('SADD', ik, hex)
  extend(ik, ttl)
  return 1
end
"""

#: The liveness rule in Lua: a declared mirror of ``keyfob.stores._protocol.is_live`` (same float
#: comparisons; ``r`` retired_at or false, ``a`` absolute deadline or nil, ``idle`` or nil).
#: tests/unit/test_lifetimes.py runs it in a real Redis against ``is_live``.
LIVENESS_LUA = r"""
local function is_live(r, a, l, e, now, idle)
  if r then return false end
  if a and now >= a then return false end
  if idle and now - l >= idle then return false end
  return now < e
end
"""

# KEYS: U:a, U:i:<sid>, U:s:<hex>; ARGV: U, hex, sid, ttl_ms, fields... → 1 | 0 (exists)
ADD = _USER_LIB + "return add(2)"

# KEYS: U:a, U:i:<sid>, U:s:<hex>; ARGV: U, limit, evict (1/0), now, idle ('' = none), then add()'s
# arguments from index 6 → {1, {evicted sids}, {dropped hex, sid, ...}} | {0} (refused) | {-1} (exists)
ADD_LIMITED = (
    _USER_LIB
    + LIVENESS_LUA
    + r"""
if redis.call('EXISTS', U .. ':s:' .. ARGV[6]) == 1 then return {-1} end
local limit, now, idle = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local live = {}
for _, hex in ipairs(redis.call('SMEMBERS', A)) do
  local f = redis.call('HMGET', U .. ':s:' .. hex, 'i', 'r', 'e', 'a', 'l', 'c')
  if not f[1] then
    redis.call('SREM', A, hex)
  elseif is_live(f[2], f[4] and tonumber(f[4]), tonumber(f[5]), tonumber(f[3]), now, idle) then
    live[#live + 1] = {tonumber(f[5]), tonumber(f[6]), f[1]}
  end
end
local evicted, dropped = {}, {}
if #live >= limit then
  if ARGV[3] ~= '1' then return {0} end
  table.sort(live, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    if x[2] ~= y[2] then return x[2] < y[2] end
    return x[3] < y[3]
  end)
  for n = 1, #live - limit + 1 do
    local sid = live[n][3]
    local ik = U .. ':i:' .. sid
    for _, hex in ipairs(redis.call('SMEMBERS', ik)) do
      drop(hex)
      dropped[#dropped + 1] = hex
      dropped[#dropped + 1] = sid
    end
    redis.call('DEL', ik)
    evicted[#evicted + 1] = sid
  end
end
add(6)
return {1, evicted, dropped}
"""
)

# KEYS: U:s:<hex>, U:a; ARGV: U, hex, seen, expires → {sid, end, ttl_ms} | nil (missing or retired)
TOUCH = (
    _USER_LIB
    + r"""
local k = KEYS[1]
local f = redis.call('HMGET', k, 'i', 'r', 'a')
if not f[1] or f[2] then return nil end
local seen, exp = tonumber(ARGV[3]), tonumber(ARGV[4])
local endt = exp
if f[3] then endt = math.min(exp, tonumber(f[3])) end
local ttl = math.max(1, math.floor((endt - seen) * 1000))
redis.call('HSET', k, 'l', ARGV[3], 'e', ARGV[4])
redis.call('PEXPIRE', k, ttl)
extend(A, ttl)
extend(U .. ':i:' .. f[1], ttl)
return {f[1], tostring(endt), ttl}
"""
)

# KEYS: U:s:<hex>; ARGV: data JSON ('' = none) → 1 | 0 (missing or retired)
SET_DATA = r"""
local k = KEYS[1]
local f = redis.call('HMGET', k, 'i', 'r')
if not f[1] or f[2] then return 0 end
if ARGV[1] == '' then redis.call('HDEL', k, 'd') else redis.call('HSET', k, 'd', ARGV[1]) end
return 1
"""

# KEYS: U:s:<old>, U:s:<new>, U:a, U:i:<sid>; ARGV: U, old hex, now, keep_old (1/0), then add()'s
# arguments from index 5 → 1 | 0 (old row missing or retired) | -1 (a row with the new hash exists)
REPLACE = (
    _USER_LIB
    + r"""
local f = redis.call('HMGET', KEYS[1], 'i', 'r')
if not f[1] or f[2] then return 0 end
if KEYS[2] ~= KEYS[1] and redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'r', ARGV[3]) else drop(ARGV[2]) end
return add(5)
"""
)

# KEYS: U:i:<sid>, U:a; ARGV: U, sid → {live rows deleted, {hexes deleted}}
DELETE = (
    _USER_LIB
    + r"""
local live, hexes = 0, {}
for _, hex in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = drop(hex)
  if f then
    hexes[#hexes + 1] = hex
    if not f[2] then live = live + 1 end
  end
end
redis.call('DEL', KEYS[1])
return {live, hexes}
"""
)

# KEYS: U:i:<sid>; ARGV: U, sid → {hex, HGETALL...} of the live row, or nil
GET_BY_ID = (
    _USER_LIB
    + r"""
for _, hex in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = U .. ':s:' .. hex
  if redis.call('EXISTS', k) == 0 then
    redis.call('SREM', KEYS[1], hex)
  elseif redis.call('HEXISTS', k, 'r') == 0 then
    local out = redis.call('HGETALL', k)
    table.insert(out, 1, hex)
    return out
  end
end
return nil
"""
)

# KEYS: U:a; ARGV: U → list of {hex, HGETALL...} of the live rows
LIST_USER = (
    _USER_LIB
    + r"""
local out = {}
for _, hex in ipairs(redis.call('SMEMBERS', A)) do
  local k = U .. ':s:' .. hex
  if redis.call('EXISTS', k) == 0 then
    redis.call('SREM', A, hex)
  elseif redis.call('HEXISTS', k, 'r') == 0 then
    local row = redis.call('HGETALL', k)
    table.insert(row, 1, hex)
    out[#out + 1] = row
  end
end
return out
"""
)

# KEYS: U:a; ARGV: U, keep ('' = none) → flat {sid, created, hex, ...} of the deleted rows
DELETE_USER = (
    _USER_LIB
    + r"""
local out = {}
for _, hex in ipairs(redis.call('SMEMBERS', A)) do
  local f = redis.call('HMGET', U .. ':s:' .. hex, 'i', 'c')
  if not f[1] then
    redis.call('SREM', A, hex)
  elseif ARGV[2] == '' or f[1] ~= ARGV[2] then
    drop(hex)
    redis.call('DEL', U .. ':i:' .. f[1])
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = hex
  end
end
return out
"""
)

# KEYS: U:a; ARGV: U, now, hex... → flat {hex, status, end} per hex: status 'd' (deleted), 'g' (already
# gone) or 'l' (still live: its expiry entry was stale, ``end`` is the row's real end of life)
DROP_EXPIRED = (
    _USER_LIB
    + r"""
local now = tonumber(ARGV[2])
local out = {}
for n = 3, #ARGV do
  local hex = ARGV[n]
  local f = redis.call('HMGET', U .. ':s:' .. hex, 'e', 'a')
  if not f[1] then
    redis.call('SREM', A, hex)
    out[#out + 1] = hex; out[#out + 1] = 'g'; out[#out + 1] = ''
  else
    local endt = tonumber(f[1])
    if f[2] then endt = math.min(endt, tonumber(f[2])) end
    if endt < now then
      drop(hex)
      out[#out + 1] = hex; out[#out + 1] = 'd'; out[#out + 1] = ''
    else
      out[#out + 1] = hex; out[#out + 1] = 'l'; out[#out + 1] = tostring(endt)
    end
  end
end
return out
"""
)

# KEYS: P t:<hex>; standalone Redis only (the row key is read from the pointer, so it is not
# declared: a Cluster refuses that, and RedisStore does the two steps there) → HGETALL of the row
GET_BY_POINTER = r"""
local u = redis.call('GET', KEYS[1])
if not u then return {} end
return redis.call('HGETALL', u .. ':s:' .. ARGV[1])
"""

# Change log append, shared by the shard scripts: member '<global seq>|<event json>', score = the
# shard's own sequence (commit order within the shard: what the cursor follows), horizon in S:ch.
_LOG_LIB = r"""
local function log(c, ch, cs, gseq, event, horizon)
  local seq = redis.call('INCR', cs)
  local m = gseq .. '|' .. event
  redis.call('ZADD', c, seq, m)
  redis.call('ZADD', ch, horizon, m)
end
"""

# KEYS: S:r, S:c, S:ch, S:cs; ARGV: sid, until, global seq, event json → 1 (changed) | 0
REVOKE = (
    _LOG_LIB
    + r"""
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
log(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[2])
return 1
"""
)

APPEND_CHANGE = _LOG_LIB

# KEYS: S:v, S:vh, S:c, S:ch, S:cs; ARGV: user, until ('inf' = forever), until as JSON, global seq
# → the new version
BUMP = (
    _LOG_LIB
    + r"""
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
local event = '{"t":"ver","user":' .. cjson.encode(ARGV[1]) .. ',"ver":' .. v .. ',"until":' .. ARGV[3] .. '}'
log(KEYS[3], KEYS[4], KEYS[5], ARGV[4], event, ARGV[2])
return v
"""
)

# KEYS: S:v, S:vh, S:c, S:ch, S:cs; ARGV: user, version, global seq → 1 if raised (upgrade from the
# layout-1 ``P v`` hash: the version is kept forever, as an old bump without a horizon)
RAISE_VERSION = (
    _LOG_LIB
    + r"""
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', '+inf', ARGV[1])
local event = '{"t":"ver","user":' .. cjson.encode(ARGV[1]) .. ',"ver":' .. ARGV[2] .. ',"until":null}'
log(KEYS[3], KEYS[4], KEYS[5], ARGV[3], event, '+inf')
return 1
"""
)

# KEYS: S:r, S:vh, S:c, S:ch; ARGV: now, batch → entries pruned (revocations + version horizons +
# log entries whose horizon is before ``now``), at most 3 * batch
PRUNE = r"""
local cut, batch = '(' .. ARGV[1], tonumber(ARGV[2])
local n = 0
for _, k in ipairs({KEYS[1], KEYS[2]}) do
  local gone = redis.call('ZRANGEBYSCORE', k, '-inf', cut, 'LIMIT', 0, batch)
  if #gone > 0 then redis.call('ZREM', k, unpack(gone)) end
  n = n + #gone
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', cut, 'LIMIT', 0, batch)
if #gone > 0 then
  redis.call('ZREM', KEYS[3], unpack(gone))
  redis.call('ZREM', KEYS[4], unpack(gone))
end
return n + #gone
"""

# KEYS: S:c, S:epoch; ARGV: after (shard seq), limit → {epoch part or false, member, seq, member, seq...}
READ_CHANGES = r"""
local out = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[2]))
table.insert(out, 1, redis.call('GET', KEYS[2]))
return out
"""
