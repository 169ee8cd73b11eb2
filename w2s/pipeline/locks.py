"""Stage locks that hold on shared filesystems: a lock file made atomically, kept alive by a heartbeat.

Why not `filelock.FileLock`: it is flock(2). A Linux NFS client emulates flock with NFS byte-range
locks, which exclude across nodes only when the server's lock manager runs and the mount has neither
`nolock` nor `local_lock=flock|all`; Lustre excludes across nodes only when mounted with `-o flock`
(`localflock` keeps locks node-local). A mount that gets this wrong gives no error: two nodes both
"hold" the lock. And where it does hold, the lock of a node that died stays until the server lets
it go (NFSv4: its lease; NFSv3: until the node reboots).

Here a lock is the file `<name>.lock`, made by link(2) from a fully written file of this process's
own: atomic on every NFS version and on Lustre (open(2)'s note on O_EXCL gives the recipe). It says
who holds it (host, process, Slurm job, since when) and a token of its own. The holder touches it every `heartbeat`
seconds. Another process takes a lock over when
- its holder ran on this machine (same host and boot) and that process is gone (killed): at once;
- the file has not changed for `expiry` seconds of the observer's own clock (a node that died, a job
  killed without warning). No clock is compared between machines, so clock skew does not matter.
Taking over renames the file aside and checks it is the very file judged stale, so a lock refreshed
meanwhile is put back. Every read opens the file, which on NFS fetches fresh attributes
(close-to-open consistency) instead of the client's cached mtime.

`W2S_LOCK_EXPIRY` (seconds, default 300) sets the expiry; the heartbeat is a fifth of it, at most 30 s.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path

DEFAULT_EXPIRY = 300.0


def expiry_seconds() -> float:
    value = os.environ.get("W2S_LOCK_EXPIRY", "")
    try:
        return float(value) if value else DEFAULT_EXPIRY
    except ValueError:
        raise ValueError(f"W2S_LOCK_EXPIRY={value!r}: give seconds, e.g. 300") from None


@functools.cache  # a machine's boot id does not change while a process runs
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks since boot): tells a live holder from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@functools.cache  # called with this process's own pid only: its start never changes
def _own_start_ticks(pid: int) -> str | None:
    return _start_ticks(pid)


def this_process() -> dict:
    """Who holds a lock: enough to tell whether it is alive, and for `w2s status` to say who it is."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": os.getpid(),
        "started": _own_start_ticks(os.getpid()),
        "slurm_job": job,
        "since": time.time(),
    }


def holder_gone(holder: dict) -> bool:
    """The holder ran on this machine and its process has ended."""
    if holder.get("host") != socket.gethostname() or holder.get("boot") != _boot_id():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    started = holder.get("started")
    return started is not None and _start_ticks(pid) != started  # the pid now belongs to another process


def read_lock(path: Path) -> tuple[dict, tuple] | None:
    """(holder, signature) of a lock file, None when there is none. The signature (holder's token,
    inode, mtime) changes with every heartbeat and tells one lock from the next (a file system
    reuses inodes at once). Unreadable content reads as an unknown holder, which only expiry removes."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        raw = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    try:
        holder = json.loads(raw)
        holder = holder if isinstance(holder, dict) else {}
    except ValueError:
        holder = {}
    return holder, (holder.get("token"), stat.st_ino, stat.st_mtime_ns)


class Lease:
    """A held lock: a daemon thread touches the file until `release`."""

    def __init__(self, path: Path, token: str, heartbeat: float):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self._thread.start()

    def _mine(self) -> bool:
        found = read_lock(self.path)
        return found is not None and found[0].get("token") == self.token

    def _beat(self, heartbeat: float) -> None:
        while not self._stop.wait(heartbeat):
            if not self._mine():
                warnings.warn(
                    f"lost the lock {self.path} (taken over as stale); the stage may be trained twice,"
                    " with the same numbers",
                    stacklevel=1,
                )
                return
            now = time.time_ns()
            os.utime(self.path, ns=(now, now))

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._mine():
            os.unlink(self.path)


class Locks:
    """The lock files in one folder, and what this process has seen of them (for expiry)."""

    def __init__(self, folder: Path, expiry: float | None = None):
        self.folder = folder
        self.expiry = expiry_seconds() if expiry is None else expiry
        self.heartbeat = min(30.0, self.expiry / 5)
        self._seen: dict[str, tuple[tuple, float]] = {}  # name -> (lock signature, when first seen)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.lock"

    def try_acquire(self, name: str, about: dict | None = None) -> Lease | None:
        """The lock, held (with a heartbeat), or None while another live process holds it."""
        path = self.path(name)
        for _ in range(2):  # a second try after taking over a stale lock
            token = uuid.uuid4().hex
            if self._link(path, {**this_process(), **(about or {}), "token": token}):
                self._seen.pop(name, None)
                return Lease(path, token, self.heartbeat)
            found = read_lock(path)
            if found is not None and not self._stale(name, *found):
                return None
            if found is not None:
                self._take_over(path, found[1])
        return None

    def _link(self, path: Path, holder: dict) -> bool:
        own = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}")
        own.write_text(json.dumps(holder))
        try:
            os.link(own, path)
        except OSError:  # held by another; or, on NFS, made although the reply was lost: the count says
            pass
        try:
            return os.stat(own).st_nlink == 2
        finally:
            os.unlink(own)

    def _stale(self, name: str, holder: dict, signature: tuple) -> bool:
        if holder_gone(holder):
            return True
        now = time.monotonic()
        seen, first = self._seen.get(name, (None, now))
        if seen != signature:  # new or touched since we last looked: the clock starts again
            self._seen[name] = (signature, now)
            return False
        return now - first >= self.expiry

    def _take_over(self, path: Path, judged: tuple) -> None:
        aside = path.with_name(f".{path.name}.stale.{socket.gethostname()}.{os.getpid()}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:  # someone else took it over first
            return
        found = read_lock(aside)
        if found is None or found[1] != judged:  # refreshed or replaced meanwhile: put it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
        os.unlink(aside)
        self._seen.pop(path.stem, None)
