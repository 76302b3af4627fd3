"""Replicas sharing a data directory: broker files under a cross-process lock, one key each.

Enrollments in two processes at once leave every gateway in the broker's password file.

Two real processes on one SQLite data directory (as two ``fleet serve`` replicas): while
this one holds the access files (``fleet.broker_files.access_files_lock``) with a list of
accounts read earlier, the other enrolls a gateway and must wait to rewrite the files, so
the file written last lists it. Processes starting at once on a fresh data directory all
read the one whole key that was linked into place (a key read while another process was
still writing it would differ).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleet.broker_files import (
    LOCK_FILE,
    PASSWORD_FILE,
    access_files_lock,
    read_password_file,
    write_access_files,
)
from fleet.service import open_enrollment, open_repository
from fleet.settings import FleetSettings
from hardware_sim.harness.waiting import wait_until

SYNCER = """
import sys, time
from pathlib import Path
from fleet.repository import NewGateway
from fleet.service import open_enrollment, open_repository
from fleet.settings import FleetSettings

settings = FleetSettings(data_dir=Path(sys.argv[1]))
repository = open_repository(settings)
now = time.time()
_token, secret = repository.create_enrollment_token("site", now + 60, None, None, now)
gateway = NewGateway(sys.argv[2], "k" * 44, "$7$h", None, None)
repository.redeem_enrollment_token(secret, gateway, now)
print("redeemed", flush=True)
open_enrollment(settings, repository).sync_broker()
print("synced", flush=True)
"""


def test_an_enrollment_in_another_process_waits_for_the_lock_and_then_lists_every_gateway(
    tmp_path: Path,
) -> None:
    settings = FleetSettings(data_dir=tmp_path)
    repository = open_repository(settings)
    enrollment = open_enrollment(settings, repository)
    enrollment.sync_broker()
    late = "gw-0000000002"
    with access_files_lock(settings.broker_dir):
        stale = repository.broker_accounts()  # read before the other process enrolls
        other = subprocess.Popen(
            [sys.executable, "-c", SYNCER, str(tmp_path), late], stdout=subprocess.PIPE, text=True
        )
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "redeemed"
        # It cannot write the files while this process holds them: it waits on the lock.
        lock_file = settings.broker_dir / LOCK_FILE
        wait_until(
            lambda: waiting_on_flock(other.pid, lock_file), 30, "the other to wait on the lock"
        )
        write_access_files(settings.broker_dir, enrollment.fleet_account, stale)
    assert other.stdout.readline().strip() == "synced"
    assert other.wait(timeout=60) == 0
    assert late in read_password_file(settings.broker_dir / PASSWORD_FILE)
    repository.close()


def waiting_on_flock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` is blocked taking a ``flock`` on ``path`` (``/proc/locks``)."""
    inode = f":{path.stat().st_ino} "
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:3] == ["->", "FLOCK"] and fields[5] == str(pid) and inode in line:
            return True
    return False


def test_the_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    with access_files_lock(tmp_path), access_files_lock(tmp_path):
        assert (tmp_path / ".access-files.lock").exists()


KEY_MAKER = """
import sys
from pathlib import Path
from fleet.secret_key import load_or_create_key

print(load_or_create_key(Path(sys.argv[1]), "console-session.key").hex(), flush=True)
"""


def test_replicas_starting_at_once_on_a_fresh_directory_share_one_whole_key(
    tmp_path: Path,
) -> None:
    makers = [
        subprocess.Popen(
            [sys.executable, "-c", KEY_MAKER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {maker.communicate(timeout=60)[0].strip() for maker in makers}
    assert [maker.returncode for maker in makers] == [0] * 6
    assert keys == {(tmp_path / "console-session.key").read_bytes().hex()}
    assert len(bytes.fromhex(keys.pop())) == 32
    assert (tmp_path / "console-session.key").stat().st_mode & 0o777 == 0o600
