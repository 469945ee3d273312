"""User-data streams: listen keys (60 min validity, extended by keepalive) and the
connections `/ws/<listenKey>` that receive an account's ORDER_TRADE_UPDATE /
ACCOUNT_UPDATE events, and `listenKeyExpired` when a key lapses."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import orjson

from mmshm.venues.sim import errors as E
from mmshm.venues.sim.accounts import Account
from mmshm.venues.sim.conn import Conn


@dataclass
class _Key:
    account: Account
    expires: float
    conns: set[Conn] = field(default_factory=set)


class UserData:
    def __init__(self, ttl_s: float = 3600.0) -> None:
        self.ttl_s = ttl_s
        self.keys: dict[str, _Key] = {}
        self._by_account: dict[str, str] = {}
        self.counters = {"events": 0}

    def create(self, acct: Account) -> str:
        """POST listenKey: the account's active key (extended) or a new one."""
        key = self._by_account.get(acct.name)
        if key is not None and key in self.keys:
            self.keys[key].expires = time.monotonic() + self.ttl_s
            return key
        key = secrets.token_hex(32)
        self.keys[key] = _Key(acct, time.monotonic() + self.ttl_s)
        self._by_account[acct.name] = key
        return key

    def keepalive(self, acct: Account) -> str:
        key = self._by_account.get(acct.name)
        if key is None or key not in self.keys:
            raise E.VenueError(E.INVALID_LISTEN_KEY, "This listenKey does not exist.")
        self.keys[key].expires = time.monotonic() + self.ttl_s
        return key

    def delete(self, acct: Account) -> None:
        key = self._by_account.pop(acct.name, None)
        info = self.keys.pop(key, None) if key else None
        if info:
            for c in list(info.conns):
                c.close()

    def attach(self, key: str, conn: Conn) -> bool:
        info = self.keys.get(key)
        if info is None:
            return False
        info.conns.add(conn)
        return True

    def detach(self, key: str, conn: Conn) -> None:
        info = self.keys.get(key)
        if info:
            info.conns.discard(conn)

    def publish(self, acct: Account, event: dict) -> None:
        """Engine listener: send event to every stream of the account's key."""
        key = self._by_account.get(acct.name)
        info = self.keys.get(key) if key else None
        if info is None or not info.conns:
            return
        msg = orjson.dumps(event)
        for c in list(info.conns):
            c.push(msg)
        self.counters["events"] += 1

    def expire(self, now: float | None = None) -> int:
        """Expire lapsed keys: send listenKeyExpired and close their streams."""
        now = time.monotonic() if now is None else now
        n = 0
        for key, info in list(self.keys.items()):
            if info.expires <= now:
                msg = orjson.dumps({"e": "listenKeyExpired", "E": time.time_ns() // 1_000_000, "listenKey": key})
                for c in list(info.conns):
                    c.push(msg)
                    c.close()
                del self.keys[key]
                if self._by_account.get(info.account.name) == key:
                    del self._by_account[info.account.name]
                n += 1
        return n

    def expire_now(self, acct: Account) -> None:
        """Control API: make the account's key lapse immediately."""
        key = self._by_account.get(acct.name)
        if key in self.keys:
            self.keys[key].expires = 0.0
            self.expire()

    def all_conns(self) -> list[Conn]:
        return [c for info in self.keys.values() for c in info.conns]
