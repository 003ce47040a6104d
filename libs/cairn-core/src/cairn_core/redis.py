"""Redis for state that must hold across replicas (docs/operations.md, Shared state): the client and the scripts.

Off unless `CAIRN_REDIS_URL` is set; then each service opens one client in its lifespan. Two failure rules:
- Unreachable at startup: the service refuses to start. An operator who set the URL asked for shared limits;
  silently running per process would multiply every limit by the number of replicas, unnoticed.
- A transient error during a request: fail open (the request passes, the cache misses, the circuit falls back
  to this process's own view) with a throttled warning. Redis blinking must never turn into a 500.

Every multi-step update is one Lua script, so it is atomic and costs one round trip. Scripts read the clock
with Redis `TIME`: replicas on different machines then agree on "now" without synchronised clocks. (A script
that writes after reading `TIME` needs Redis 5 or later, which replicates scripts by their effects.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

REDIS_URL_ENV = "CAIRN_REDIS_URL"
# Every key starts with this, so one Redis can be shared with other applications and inspected by prefix.
KEY_PREFIX = "cairn:"
# Short on purpose: a request waits at most this long for Redis before failing open.
SOCKET_TIMEOUT_S = 0.5

log = structlog.get_logger("redis")


class RedisUnavailable(RuntimeError):
    """Raised from a lifespan: uvicorn then exits with this message instead of serving without Redis."""


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def make_redis(url: str) -> Redis:
    """A client that gives up fast: short socket timeouts, and one immediate retry (a pooled connection
    that Redis closed since) instead of redis-py's default backoff, which held each call for seconds."""
    return Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), retries=1),
    )


@asynccontextmanager
async def redis_client(url: str | None) -> AsyncIterator[Redis | None]:
    """The client for `url`, checked with a PING; None when `url` is empty (state stays per process)."""
    if not url:
        yield None
        return
    client = make_redis(url)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(
            f"{REDIS_URL_ENV} is set ({_redacted(url)}) but Redis does not answer ({exc}). Start Redis, "
            f"or unset {REDIS_URL_ENV} to keep rate limits, the answer cache and circuits per process."
        ) from exc
    log.info("redis_connected", url=_redacted(url))
    try:
        yield client
    finally:
        await client.aclose()


class RedisOutageLog:
    """Logs `redis_unavailable` for one component at most once per `every_s`: an outage under load is a line
    every few seconds, not one per request."""

    def __init__(self, component: str, every_s: float = 10.0) -> None:
        self.component = component
        self.every_s = every_s
        self._last = -every_s

    def __call__(self, exc: BaseException, fallback: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.warning("redis_unavailable", component=self.component, error=repr(exc), fallback=fallback)


# KEYS[1] the bucket (hash: tokens, updated). ARGV: refill rate per second, burst, spend (1) or peek (0).
# Returns the seconds until a token is available, as a string (Lua numbers become integers in replies).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local spend = ARGV[3] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  if not spend then return '0' end
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then
  if spend then tokens = tokens - 1 end
else
  wait = (1 - tokens) / rate
end
if spend then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
  -- A bucket that has refilled completely carries no information: let Redis forget it then.
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
return tostring(wait)
"""

# KEYS[1] a sorted set of request tickets scored by when they expire. ARGV: limit, ttl in seconds, ticket.
# Each ticket expires on its own, so the tickets of a replica that died mid-request go away after the ttl
# even while the client keeps sending (a shared INCR counter refreshed by each request would keep them).
# Returns 1 when the request may run (its ticket is added), 0 when the limit is reached.
INFLIGHT_ENTER_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tostring(now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], tostring(now + ttl), ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl))
return 1
"""

# KEYS[1] the circuit (hash: failures, open_until), KEYS[2] the half-open probe's lease. ARGV: probe lease
# in ms, this caller's token. Returns {state, failures, seconds until half-open}; state is closed (call),
# open (refuse), probe (call: this caller holds the one probe) or half_open (refuse: another caller probes).
CIRCUIT_CHECK = """
local v = redis.call('HMGET', KEYS[1], 'failures', 'open_until')
local failures = tonumber(v[1]) or 0
local open_until = tonumber(v[2]) or 0
if open_until == 0 then return {'closed', failures, '0'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if now < open_until then return {'open', failures, tostring(open_until - now)} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then return {'probe', failures, '0'} end
return {'half_open', failures, '0'}
"""

# KEYS as CIRCUIT_CHECK. ARGV: failure threshold, open seconds, 1 if this call was the probe, key ttl in s.
# Returns {failures, 1 if the circuit is now open}.
CIRCUIT_FAILURE = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local opened = 0
if ARGV[3] == '1' or failures >= tonumber(ARGV[1]) then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + tonumber(ARGV[2])))
  redis.call('DEL', KEYS[2])
  opened = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {failures, opened}
"""

# KEYS[1] the probe lease; ARGV[1] the token of the caller that took it. Frees it only if that caller holds it.
RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] the live keys (hash: digest -> record), KEYS[2] the revoked digests (set). ARGV: digest, record,
# digest, record, ... Adds each key unless it is there already or was ever revoked, so a replica that copies
# its own file in at start cannot bring back a key that another replica revoked. Returns how many it added.
KEYS_IMPORT_LUA = """
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then
    added = added + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return added
"""
