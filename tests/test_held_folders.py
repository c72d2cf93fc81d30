"""Grading's folders in /tmp (`held_folders`): a killed grader's go when the next grading starts,
a living grader's never do."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.grading import held_folders

MAKER = "from course_utils.grading import held_folders; import time; print(held_folders.make('cl-'), flush=True); " \
        "time.sleep(120)"


@pytest.fixture
def grader():
    """Another process that made a held folder (and holds it until it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", MAKER], stdout=subprocess.PIPE, text=True)
    folder = Path(proc.stdout.readline().strip())
    (folder / "kernel-1").write_text("a socket would be here")
    yield proc, folder
    proc.kill()
    proc.wait()
    held_folders.sweep(min_age_s=0)


def test_a_living_graders_folder_stays_and_a_killed_ones_goes(grader):
    proc, folder = grader
    assert folder.parent == Path("/tmp") and folder.name.startswith("cl-")
    assert str(folder) not in held_folders.sweep(min_age_s=0) and folder.is_dir()
    proc.send_signal(signal.SIGKILL)  # as a Dask worker's grading process dies with its worker
    proc.wait()
    assert str(folder) in held_folders.sweep(min_age_s=0)
    assert not folder.exists()


def test_a_new_folder_is_not_swept_before_its_maker_can_lock_it():
    folder = Path(held_folders.TMP) / "cl-test-just-made"
    folder.mkdir()
    try:
        assert str(folder) not in held_folders.sweep()  # younger than a minute, not locked (yet)
        assert str(folder) in held_folders.sweep(min_age_s=0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_own_folders_are_kept_until_dropped():
    folder = held_folders.make("clz-")
    assert os.path.isdir(folder) and str(folder) not in held_folders.sweep(min_age_s=0)
    held_folders.drop(folder)
    assert not os.path.exists(folder) and folder not in held_folders._held


def test_links_and_other_names_are_left_alone(tmp_path):
    target = tmp_path / "not-grading"
    target.mkdir()
    link = Path(held_folders.TMP) / "cl-test-a-link"
    link.symlink_to(target)
    try:
        assert str(link) not in held_folders.sweep(min_age_s=0)
        assert link.is_symlink() and target.is_dir()
    finally:
        link.unlink()
    with pytest.raises(AssertionError):
        held_folders.make("anything-")
