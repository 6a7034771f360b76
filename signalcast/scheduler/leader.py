"""One scheduler leader across processes and hosts, by a Redis lock.

APScheduler 3.x in several processes would fire every job in each of them. So every
``signalcast scheduler`` process competes for one Redis key: the holder (``SET NX PX`` with a
random token) is the leader and renews the key well within its TTL; the others are hot standbys
that retry every few seconds and take over within one TTL when the leader dies. Renewal and
release check the token (a Lua script), so a leader that paused past its TTL can never renew or
delete a lock that another process now holds; it steps down instead.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket

import redis

log = logging.getLogger(__name__)

LOCK_KEY = "signalcast:scheduler:leader"
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: redis.Redis, ttl_seconds: float, key: str = LOCK_KEY):
        self.client, self.key = client, key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Become leader if nobody is; True when this process now holds the lock."""
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend our lease; False means we lost leadership (expired, or another holds it)."""
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:  # expiry frees it anyway
            log.warning("could not release the leader lock (%s); it expires by itself", exc)

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value else None
