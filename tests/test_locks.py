"""Stage locks (w2s.pipeline.locks): exclusive across processes, freed at once when the holder is
killed on this machine, and after the expiry when a holder elsewhere falls silent, never while its
heartbeat goes on. Real processes, real files (a local disk: no NFS server runs here)."""

import json
import os
import signal
import subprocess
import sys
import time

from w2s.pipeline.locks import Locks, read_lock

HOLD = """
import sys, time
from pathlib import Path
from w2s.pipeline.locks import Locks
lease = Locks(Path(sys.argv[1]), expiry=float(sys.argv[2])).try_acquire("stage")
print("held" if lease else "refused", flush=True)
time.sleep(float(sys.argv[3]))
if lease:
    lease.release()
print("released", flush=True)
"""


def hold_in_another_process(folder, expiry: float, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(expiry), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


CONTEND = """
import os, sys, time
from pathlib import Path
from w2s.pipeline.locks import Locks
folder, start = Path(sys.argv[1]), Path(sys.argv[2])
locks, got = Locks(folder, expiry=60), 0
while not start.exists():
    time.sleep(0.001)
for _ in range(200):
    lease = locks.try_acquire("stage")
    if lease is None:
        continue
    got += 1
    os.mkdir(folder / "inside")  # fails if another process is inside: the lock did not exclude
    time.sleep(0.001)
    os.rmdir(folder / "inside")
    lease.release()
print(got)
"""


def test_processes_racing_for_one_lock_never_hold_it_together(tmp_path):
    (tmp_path / "locks").mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTEND, str(tmp_path / "locks"), str(tmp_path / "go")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    time.sleep(1)  # every process is importing or waiting
    (tmp_path / "go").touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
    assert sum(int(out) for out, _ in results) > 0
    assert not list((tmp_path / "locks").iterdir())  # no lock, no file of a process's own left behind


def test_a_lock_of_a_killed_process_on_this_machine_is_taken_over_at_once(tmp_path):
    holder = hold_in_another_process(tmp_path, expiry=3600, seconds=60)
    locks = Locks(tmp_path, expiry=3600)
    assert locks.try_acquire("stage") is None
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lease = locks.try_acquire("stage")  # no expiry wait: its process is gone
    assert lease is not None and read_lock(tmp_path / "stage.lock")[0]["pid"] == os.getpid()
    lease.release()


def test_a_silent_lock_from_another_node_expires_after_the_observers_own_wait(tmp_path, monkeypatch):
    from w2s.pipeline import locks as module

    now = [1000.0]  # the observer's clock, moved by the test: the outcome cannot depend on the machine's load
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    (tmp_path / "stage.lock").write_text(json.dumps({"host": "node-17", "pid": 4242, "since": 0}))
    locks = Locks(tmp_path, expiry=1.0)
    assert locks.try_acquire("stage") is None  # first sight starts the observer's clock
    now[0] += 0.99
    assert locks.try_acquire("stage") is None
    now[0] += 0.02
    lease = locks.try_acquire("stage")
    assert lease is not None and read_lock(tmp_path / "stage.lock")[0]["host"] != "node-17"
    lease.release()


def test_a_heartbeat_keeps_a_lock_past_the_expiry_and_a_frozen_holder_loses_it(tmp_path):
    # a real heartbeat thread: it beats every 0.5 s against an expiry of 2.5 s, so a holder slowed by
    # a loaded machine still keeps its lock (it would have to stall for seconds to lose it)
    holder = hold_in_another_process(tmp_path, expiry=2.5, seconds=9)
    locks = Locks(tmp_path, expiry=2.5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # two expiries: the heartbeat keeps changing the file
        assert locks.try_acquire("stage") is None
        time.sleep(0.1)
    holder.send_signal(signal.SIGSTOP)  # alive but silent, as a hung node
    try:
        time.sleep(0.6)  # a heartbeat in flight lands
        assert locks.try_acquire("stage") is None
        time.sleep(2.6)
        lease = locks.try_acquire("stage")
        assert lease is not None
    finally:
        holder.send_signal(signal.SIGCONT)
    assert holder.communicate(timeout=30)[0].strip() == "released"
    # the old holder, woken, released a lock that is no longer its own: it left the new one alone
    assert read_lock(tmp_path / "stage.lock")[0]["pid"] == os.getpid()
    lease.release()
    assert not (tmp_path / "stage.lock").exists()


def test_a_lock_refreshed_while_judged_stale_is_put_back(tmp_path):
    (tmp_path / "stage.lock").write_text("{}")
    locks = Locks(tmp_path, expiry=1.0)
    holder, (token, inode, mtime) = read_lock(tmp_path / "stage.lock")
    locks._take_over(tmp_path / "stage.lock", (token, inode, mtime - 1))  # judged on an older look
    assert (tmp_path / "stage.lock").read_text() == "{}" and not list(tmp_path.glob(".*"))
