"""A grading worker's nbgrader runs in forks of itself (`course_utils.grading.forked`): each as
separate as the subprocess it replaces (exit status, output, its own folder and environment,
a memory limit, and on timeout its whole session killed). Each case runs in a fresh
single-threaded Python, as a pool worker is."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import json, os, subprocess, sys, time
from course_utils.grading import forked

def report(code):
    print(json.dumps({"cwd": os.getcwd(), "env": dict(os.environ), "pid": os.getpid(), "sid": os.getsid(0)}))
    return code

def sleeper():
    subprocess.Popen(["sleep", "876.75"])
    time.sleep(600)

def hog():
    bytearray(3 * 2**30)

def boom():
    raise ValueError("a bug in the grading code")

def logs():
    import logging
    logging.getLogger("grading").addHandler(logging.StreamHandler())  # on sys.stderr, as nbgrader's log
    logging.getLogger("grading").error("logged by the fork")
    print("printed by the fork")

target = {"report": report, "sleeper": sleeper, "hog": hog, "boom": boom, "logs": logs}[sys.argv[1]]
if sys.argv[1] == "logs":  # the worker's own streams are elsewhere (as under pytest's capture)
    import io
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
start = time.monotonic()
from course_utils.grading.student import _limit_memory
status, output = forked.call(target, *(int(a) for a in sys.argv[2:]), cwd=os.environ["WHERE"],
                             env={"ONLY": "this", "PATH": os.environ["PATH"]}, timeout=3, prepare=_limit_memory(1))
sys.__stdout__.write(json.dumps({"status": status, "output": output, "seconds": time.monotonic() - start,
                                 "parent": os.getpid()}) + chr(10))
"""


def forked_call(case: str, *args, where: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, case, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "WHERE": str(where)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_status_output_folder_and_environment_are_the_forks_own(tmp_path):
    got = forked_call("report", 3, where=tmp_path)
    assert got["status"] == 3
    child = json.loads(got["output"].strip().splitlines()[-1])
    assert child["cwd"] == str(tmp_path) and child["env"] == {"ONLY": "this", "PATH": os.environ["PATH"]}
    assert child["pid"] != got["parent"] and child["sid"] == child["pid"]  # a session of its own


def test_timeout_kills_the_fork_and_what_it_started(tmp_path):
    got = forked_call("sleeper", where=tmp_path)
    assert got["status"] == -9 and "time limit" in got["output"] and got["seconds"] < 30
    time.sleep(0.5)
    alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith("876.75")]
    assert not alive


def test_memory_limit_and_errors_end_in_a_status_and_a_message(tmp_path):
    hog = forked_call("hog", where=tmp_path)
    assert hog["status"] == 1 and "MemoryError" in hog["output"]
    boom = forked_call("boom", where=tmp_path)
    assert boom["status"] == 1 and "a bug in the grading code" in boom["output"]


def test_the_forks_output_is_captured_wherever_the_workers_streams_point(tmp_path):
    got = forked_call("logs", where=tmp_path)
    assert got["status"] == 0
    assert "logged by the fork" in got["output"] and "printed by the fork" in got["output"]


def test_only_a_single_threaded_process_forks():
    import threading

    from course_utils.grading import forked

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not forked.usable()
    finally:
        stop.set()
        thread.join()


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


if not sys.platform.startswith("linux"):
    pytestmark = pytest.mark.skip("forked grading runs are Linux-only (elsewhere: subprocesses)")


def test_what_a_grader_keeps_of_a_childs_output_is_bounded():
    from course_utils.grading.forked import BoundedOutput

    kept = BoundedOutput(keep=10)
    for chunk in (b"head-", b"01234", b"x" * 1000, b"-the-end"):
        kept.add(chunk)
    text = kept.text()
    assert text.startswith("head-01234") and text.endswith("x-the-end") and "998 bytes of output left out" in text
    small = BoundedOutput(keep=100)
    small.add(b"all of it")
    assert small.text() == "all of it"
