"""Receivers running as different users share one dataset (issue 12, finding 2).

deploy/ runs every writer with the dataset's group (runAsGroup / fsGroup 65532) but not one uid: the node
DaemonSet is uid 0 for the kubelet's socket. So what one writer creates, another must be able to write
into: group-writable setgid directories and group-readable files, whatever the process umask; and two
writers starting together must not trip over each other's temporary schema file.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from collector_ext import schema
from collector_ext.schema import GPU_METRICS, SCHEMA_FILE
from collector_ext.storage.dataset_files import DatasetFiles


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)  # the usual container default: without care, directories come out 0755
    yield
    os.umask(previous)


def _one_metric_row() -> pa.Table:
    row = {"time": datetime(2026, 11, 2, tzinfo=UTC), "metric": "DCGM_FI_DEV_FB_USED", "value": 1.0}
    return pa.Table.from_pylist([row], schema=GPU_METRICS)


def test_directories_are_group_writable_setgid_and_files_group_readable(tmp_path, umask_022):
    root = tmp_path / "team-volume" / "dataset"
    (written,) = DatasetFiles(root, "receiver-a").write("gpu_metrics", _one_metric_row())
    for directory in (root.parent, root, root / "gpu_metrics", written.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o2775, directory
    for file in (written, root / SCHEMA_FILE):
        assert stat.S_IMODE(file.stat().st_mode) == 0o664, file


def test_a_directory_another_writer_created_is_left_alone(tmp_path, umask_022):
    root = tmp_path / "dataset"
    (root / "gpu_metrics").mkdir(parents=True)
    os.chmod(root / "gpu_metrics", 0o2770)  # the other writer's (or the admin's) choice
    DatasetFiles(root, "receiver-b").write("gpu_metrics", _one_metric_row())
    assert stat.S_IMODE((root / "gpu_metrics").stat().st_mode) == 0o2770


def test_two_writers_starting_together_each_write_their_own_schema_temp_file(tmp_path, monkeypatch):
    """Writer A is interrupted between writing its temporary schema file and renaming it; meanwhile writer B
    starts and writes the schema file completely. A must still finish, and no temporary file is left."""
    root = tmp_path / "dataset"
    real_replace = os.replace
    interrupted: list[str] = []

    def replace_after_the_other_writer(src, dst):
        if not interrupted and str(dst).endswith(SCHEMA_FILE):
            interrupted.append(str(src))
            DatasetFiles(root, "receiver-b")  # B starts and writes _schema.json while A waits to rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_the_other_writer)
    DatasetFiles(root, "receiver-a")
    assert interrupted, "the schema file was not written through a rename"
    assert schema.read_schema_version(root) == schema.SCHEMA_VERSION
    assert sorted(p.name for p in root.iterdir()) == [SCHEMA_FILE]
