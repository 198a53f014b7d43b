"""A real full disk: a receiver on a small tmpfs, killed while the disk is full, loses no acknowledged span and
writes none twice (issue 16). The tmpfs is mounted in a user and mount namespace of its own (`unshare`), so
no privilege is needed; the scenario itself is tests/disk_full_scenario.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent / "disk_full_scenario.py"
MOUNT_AND_RUN = 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"'


@pytest.mark.slow
def test_disk_full_then_kill_then_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    result_path = tmp_path / "result.json"
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed for the tmpfs"
    command = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", MOUNT_AND_RUN]
    command += [str(mount), sys.executable, str(SCENARIO), str(mount), str(result_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-5000:] + (tmp_path / "receiver.log").read_text()[-5000:]
    result = json.loads(result_path.read_text())
    assert result["refused"] == 10 and result["other_errors"] == 0  # full: refused, and only retryably
    written = result["written"]
    assert len(written) == len(set(written)), "a span was written twice"
    assert set(written) == set(result["acked"]), (
        f"{len(set(result['acked']) - set(written))} acknowledged spans lost, "
        f"{len(set(written) - set(result['acked']))} written without acknowledgement"
    )
    assert len(result["acked"]) > 10 * 200  # the disk took some requests before it was full
    # the receiver did hit the full disk, said so, and counted it
    log = (tmp_path / "receiver.log").read_text()
    assert '"error": "write-ahead log: No space left on device"' in log
    metrics = result["metrics_on_the_full_disk"].splitlines()
    assert 'agentmeter_backpressure_refusals_total{pipeline="spans",reason="disk"} 0.0' in metrics  # not statvfs
    failures = next(
        line for line in metrics if line.startswith('agentmeter_wal_append_failures_total{pipeline="spans"}')
    )
    assert float(failures.split()[-1]) >= 9  # the 10th refusal may not have been counted when it was read
