"""The durable answer cache, and the leases that keep jobs sharing it from asking one question twice.

Every answer is stored in SQLite under its request key the moment it arrives, so a
job killed halfway loses nothing and a rerun never asks the same question twice.
The cache lives outside results/ and survives deleting it.

Jobs that share the cache (shards, or two runs of the workflow at once) take a
lease on each missing key before generating (table `leases`: key, holder,
expires). A heartbeat thread renews a holder's leases every `lease_s / 3` while
it works; a lease ends when its answer is stored (in the same transaction), when
the request fails, or when the call ends. A lease whose holder was killed is taken
over: at once when the holder ran on this machine and its process is gone,
otherwise when the lease expires.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from herd.teacher.request import Answer

log = logging.getLogger(__name__)

LEASE_S = 120.0       # default teacher.lease_s: a killed holder's keys are free again after this


def _place() -> str | None:
    """This host and PID namespace, where a holder's PID can be checked; None where it cannot."""
    try:
        ns = os.stat("/proc/self/ns/pid")
        # cloned VMs share hostnames, and every host's first PID namespace has the same inode
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}.{ns.st_dev}.{ns.st_ino}"


def new_holder() -> str:
    """A lease holder id: place, PID and a random part (two teachers in one process differ)."""
    return f"{_place() or socket.gethostname() + '/?'}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_alive(holder: str) -> bool:
    """False only when `holder` ran here and its process is gone (or a zombie); else True."""
    place, _, pid_text = holder.rpartition(":")[0].rpartition(":")
    here = _place()
    if here is None or place != here:
        return True  # another machine or container: only the lease's expiry can tell
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    try:  # killed but not yet reaped by its parent: as dead as it gets
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True


class ResponseCache:
    """A SQLite table of answers, and the leases on questions being answered;
    safe for several processes writing at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers ("
            " key TEXT PRIMARY KEY, answer TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS leases ("
            " key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)"
        )

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no upgrade deadlock
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get(self, key: str) -> Answer | None:
        row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return Answer(**{**data, "cached": True})

    def put(self, key: str, answer: Answer, holder: str | None = None) -> None:
        """Store `answer`; with `holder`, end that holder's lease on `key` in the same transaction."""
        data = asdict(answer)
        data.pop("cached")
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, answer, created) VALUES (?, ?, ?)",
                (key, json.dumps(data, ensure_ascii=False), time.time()),
            )
            if holder is not None:
                self._db.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))

    def lease(self, key: str) -> tuple[str, float] | None:
        """(holder, expiry time) of the lease on `key`, or None."""
        row = self._db.execute("SELECT holder, expires FROM leases WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def holders(self) -> dict[str, int]:
        """Each lease holder and how many keys it holds (expired leases included)."""
        return dict(self._db.execute("SELECT holder, COUNT(*) FROM leases GROUP BY holder").fetchall())

    def claim(self, keys: list[str], holder: str, lease_s: float,
              alive: Callable[[str], bool] = holder_alive) -> tuple[list[str], dict[str, str], list[str]]:
        """Lease to `holder`, for `lease_s` seconds, those of `keys` that are neither answered
        nor leased by another live holder, in one transaction.

        Returns (claimed, held: key -> other holder, answered). A lease that expired, or whose
        holder `alive` says is dead, is taken over; `holder`'s own leases are renewed.
        """
        verdicts: dict[str, bool] = {}

        def live(other: str) -> bool:
            if other not in verdicts:
                verdicts[other] = alive(other)
            return verdicts[other]

        def scan(now: float) -> tuple[list[str], dict[str, str], list[str]]:
            free, held, answered = [], {}, []
            for key in dict.fromkeys(keys):
                if self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone():
                    answered.append(key)
                elif (row := self.lease(key)) and row[0] != holder and row[1] > now and live(row[0]):
                    held[key] = row[0]
                else:
                    free.append(key)
            return free, held, answered

        free, held, answered = scan(time.time())
        if not free:  # read only: waiting jobs poll without taking the write lock
            return [], held, answered
        with self._transaction():
            now = time.time()
            free, held, answered = scan(now)  # again under the lock: someone may have come first
            self._db.executemany("INSERT OR REPLACE INTO leases (key, holder, expires) VALUES (?, ?, ?)",
                                 [(key, holder, now + lease_s) for key in free])
        return free, held, answered

    def lease_to(self, keys: list[str], holder: str, lease_s: float) -> None:
        """Lease `keys` to `holder` whoever held them (for a holder that owns them by other means,
        e.g. a submitted Batch API batch)."""
        with self._transaction():
            expires = time.time() + lease_s
            self._db.executemany("INSERT OR REPLACE INTO leases (key, holder, expires) VALUES (?, ?, ?)",
                                 [(key, holder, expires) for key in keys])

    def renew(self, holder: str, lease_s: float) -> int:
        """Push back the expiry of all of `holder`'s leases; how many it holds."""
        with self._transaction():
            return self._db.execute("UPDATE leases SET expires = ? WHERE holder = ?",
                                    (time.time() + lease_s, holder)).rowcount

    def release(self, holder: str, keys: list[str] | None = None) -> None:
        """End `holder`'s leases on `keys` (all of them when None)."""
        with self._transaction():
            if keys is None:
                self._db.execute("DELETE FROM leases WHERE holder = ?", (holder,))
            else:
                self._db.executemany("DELETE FROM leases WHERE key = ? AND holder = ?",
                                     [(key, holder) for key in keys])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class Heartbeat(threading.Thread):
    """Renews a holder's leases every lease_s / 3, on its own connection (SQLite's are per thread)."""

    def __init__(self, path: Path, holder: str, lease_s: float):
        super().__init__(name=f"lease-heartbeat-{holder}", daemon=True)
        self.path, self.holder, self.lease_s = path, holder, lease_s
        self._done = threading.Event()  # not `_stop`: Thread has a method of that name

    def run(self) -> None:
        cache = ResponseCache(self.path)
        try:
            while not self._done.wait(self.lease_s / 3):
                try:
                    cache.renew(self.holder, self.lease_s)
                except sqlite3.Error as exc:  # the next beat tries again; two misses are allowed
                    log.warning("could not renew the cache leases of %s: %s", self.holder, exc)
        finally:
            cache.close()

    def stop(self) -> None:
        self._done.set()
        self.join()
