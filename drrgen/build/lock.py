"""One build at a time per store: a lock file beside it, taken over once its build is gone.

The lock of ``train.zarr`` is ``train.zarr.lock`` (beside the store, so that it never mixes
with the store's keys). It is created exclusively (atomic on local disks; on object stores as
atomic as the backend's exclusive create) and holds JSON: ``host``, ``pid``, ``token``,
``started`` and ``refreshed`` (seconds since the epoch). The build holding it rewrites
``refreshed`` every `REFRESH_S` seconds from a thread. A lock is stale, and the next build
takes it over, when its process is gone (same host) or when it was not refreshed for
`STALE_S` seconds (any host, e.g. a killed SLURM job): a dead build never blocks for long.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import fsspec

from drrgen.store_contract import StoreError

REFRESH_S = 30.0
STALE_S = 300.0


class LockError(StoreError):
    """Another build is writing the store; the message names the lock file and its holder."""


def lock_url(url: str) -> str:
    """The lock file of the store at `url` (path or fsspec URL): ``<url>.lock``."""
    return str(url).rstrip("/") + ".lock"


def _alive(pid) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def is_stale(holder: dict, now: float) -> bool:
    """Whether the lock contents `holder` belong to a build that is gone.

    Args:
        holder: the lock's JSON (``host``, ``pid``, ``refreshed`` in seconds since the epoch).
        now: the current time, seconds since the epoch.
    """
    if holder.get("host") == socket.gethostname() and holder.get("pid") is not None:
        if not _alive(holder["pid"]):
            return True
    return now - float(holder.get("refreshed", 0.0)) > STALE_S


class BuildLock:
    """The lock of one store, held by this process (see `hold_lock`).

    Args:
        url: the store's path or URL.
        storage_options: fsspec options for URLs.
    """

    def __init__(self, url: str, storage_options: dict | None = None):
        self.where = lock_url(url)
        try:
            self.fs, self.path = fsspec.core.url_to_fs(self.where, **(storage_options or {}))
        except ImportError as err:  # the protocol's fsspec backend (s3fs, gcsfs, ...) is absent
            raise StoreError(f"{url}: {err} (the fsspec backend of this URL)") from err
        now = time.time()
        self.mine = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,
            "started": now,
            "refreshed": now,
        }

    def _read(self) -> dict | None:
        """The lock's contents; None if there is no lock. An unreadable lock (caught while
        being written) is dated by its modification time."""
        try:
            return json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None
        except ValueError:
            try:
                return {"refreshed": self.fs.modified(self.path).timestamp()}
            except FileNotFoundError:
                return None

    def _create(self) -> bool:
        """Create the lock file with our contents; False if it exists."""
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(json.dumps(self.mine).encode())
        except FileExistsError:
            return False
        return True

    def acquire(self) -> None:
        """Take the lock, taking over a stale one.

        Raises:
            LockError: a live build holds it (one line naming the lock file and the holder).
        """
        for _ in range(3):
            if self._create():
                return
            holder = self._read()
            if holder is not None and not is_stale(holder, time.time()):
                raise LockError(self._busy(holder))
            if holder is not None and self._read() == holder:  # not taken over meanwhile
                self.fs.rm_file(self.path)
        raise LockError(f"{self.where}: another build took this lock at the same time")

    def _busy(self, holder: dict) -> str:
        since = datetime.fromtimestamp(float(holder.get("started", 0)), UTC)
        seen = time.time() - float(holder.get("refreshed", 0.0))
        return (
            f"{self.where}: another build is writing this store (pid {holder.get('pid')} on "
            f"{holder.get('host')}, since {since.isoformat(timespec='seconds')}, lock refreshed "
            f"{seen:.0f} s ago); wait for it, or delete this file if that build is gone "
            f"(a lock not refreshed for {STALE_S:.0f} s is taken over)"
        )

    def refresh(self) -> bool:
        """Rewrite ``refreshed``; False when the lock is no longer ours (taken over)."""
        holder = self._read()
        if holder is None or holder.get("token") != self.mine["token"]:
            return False
        self.mine["refreshed"] = time.time()
        self.fs.pipe_file(self.path, json.dumps(self.mine).encode())
        return True

    def release(self) -> None:
        """Delete the lock if it is still ours."""
        holder = self._read()
        if holder is not None and holder.get("token") == self.mine["token"]:
            self.fs.rm_file(self.path)


@contextmanager
def hold_lock(url: str, storage_options: dict | None = None, refresh_s: float = REFRESH_S):
    """Hold the store's lock for the block, refreshing it every `refresh_s` seconds.

    Raises:
        LockError: another live build holds it.
    """
    lock = BuildLock(url, storage_options)
    lock.acquire()
    stop = threading.Event()

    def keep_fresh():
        while not stop.wait(refresh_s) and lock.refresh():
            pass

    thread = threading.Thread(target=keep_fresh, name="drrgen-lock", daemon=True)
    thread.start()
    try:
        yield lock
    finally:
        stop.set()
        thread.join()
        lock.release()
