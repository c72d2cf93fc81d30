"""Grading on a Dask cluster (`course-lab autograde --scheduler`): a LocalCluster of two worker
processes on loopback grades to the same grades.csv as the local pool, each worker in its own
temporary folders (the template comes over the wire, the feedback goes back as data), and a
worker killed mid-run (by its PID) still leaves every student graded exactly once."""
from __future__ import annotations

import contextlib
import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from course_utils.grading import cluster, cluster_tls
from course_utils.grading.autograde import autograde
from grading_fixtures import RELEASE, ROOT, WRONG_ANSWERS, load, replace_solution, solved, write_student

pytestmark = pytest.mark.grading
distributed = pytest.importorskip("distributed", reason='the cluster extra: pip install "course-utils[cluster]"')

NB00 = "00_getting_started.ipynb"
_, WRONG_ID, WRONG_SOURCE = next(w for w in WRONG_ANSWERS if w[0] == NB00)
# student -> (notebook 00 as handed in, points expected): one notebook each keeps a student at seconds
STUDENTS = {
    "ada": (lambda: solved(NB00), 2.0),
    "ben": (lambda: load(RELEASE / NB00), 0.0),
    "cy": (lambda: replace_solution(load(RELEASE / NB00), WRONG_ID, WRONG_SOURCE), 0.0),
    "dee": (lambda: solved(NB00), 2.0),
    "eve": (lambda: solved(NB00), 2.0),
}


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster-submissions")
    for student, (notebook, _) in STUDENTS.items():
        write_student(folder, student, {NB00: notebook()})
    return folder


@contextlib.contextmanager
def restored_environ():
    """Dask's nanny sets OMP_NUM_THREADS=1 (and more) in *this* process's environment and leaves
    it there; every later test's kernels would run torch on one thread. Put it back."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def dask_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("dask")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """The course's authority and certificates (`course-lab cluster-certs`)."""
    return cluster_tls.make_certificates(tmp_path_factory.mktemp("tls") / "certs")


def cluster_security(folder: Path):
    """What the scheduler and each worker are started with (every process of a LocalCluster at once)."""
    return cluster_tls.security(folder, "scheduler", "worker", "client")


@pytest.fixture(scope="module")
def local_cluster(dask_folder, certificates):
    # two single-threaded worker processes, as `dask worker` would run on two machines; no memory
    # limit of Dask's own (each student's cgroup limits their processes); every process speaking
    # mutual TLS with the course's certificates: started as docs/grading.md starts them
    with restored_environ(), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                      host="127.0.0.1", dashboard_address=":0", memory_limit=0,
                                                      preload=["course_utils.grading.cluster"],
                                                      local_directory=dask_folder, protocol="tls://",
                                                      security=cluster_security(certificates)) as local:
        assert local.scheduler_address.startswith("tls://")
        yield local


@pytest.fixture(scope="module")
def ta(certificates):
    """The TA's client credentials (`--tls DIR`)."""
    return cluster_tls.security(certificates)


def worker_folders(dask_folder: Path) -> set[Path]:
    """Each worker's own folder in a cluster's local directory."""
    return {p for p in dask_folder.rglob("worker-*") if p.is_dir()}


def grading_leftovers() -> set[str]:
    """What grading puts in /tmp (the grading process's sockets and kernels' folders)."""
    return {p.name for pattern in ("cl-*", "clz-*", "course-lab-*") for p in Path("/tmp").glob(pattern)}


@contextlib.contextmanager
def nanny_warnings():
    """What Dask's nannies (in this process) warn about, e.g. a worker that would not exit."""
    import logging

    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("distributed.nanny")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def local_pool(submissions, tmp_path_factory):
    out = tmp_path_factory.mktemp("pool-out")
    autograde(submissions, out, course_root=ROOT, workers=2, timeout=30, progress=False)
    return out


def rows(out: Path) -> dict[str, dict]:
    return {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}


def test_workers_started_with_the_preload_join_warm(local_cluster, ta):
    with distributed.Client(local_cluster.scheduler_address, security=ta) as client:
        # asked at once, before any task: each worker started its grading process and its imports as it started
        assert set(client.run(cluster.worker_is_warm).values()) == {True}
        zygotes = client.run(cluster.worker_zygote_pid)  # and its kernels' zygote, importing in its sandbox
        assert all(zygotes.values()) and len(set(zygotes.values())) == 2, zygotes
        # whose site/ lies in the worker's local directory (Dask removes a killed worker's, not /tmp)
        assert all(client.run(zygote_folder_is_the_workers).values())
        assert not any(profiling(client).values())  # its tasks only wait for the grading process


def zygote_folder_is_the_workers(dask_worker) -> bool:
    return Path(dask_worker.local_directory) in cluster._helpers["sandbox"].parents


def profiling(client) -> dict:
    """Per worker: whether its statistical profiler runs."""
    return client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)


def test_cold_workers_warm_up_while_the_ta_prepares_the_template():
    with restored_environ(), distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                                      host="127.0.0.1", dashboard_address=":0",
                                                      memory_limit=0) as local:
        with distributed.Client(local.scheduler_address) as client:
            assert set(client.run(cluster.worker_is_warm).values()) == {False}  # no grading process yet
            assert all(profiling(client).values())
            with cluster.connected(local.scheduler_address):  # what autograde does before preparing the template
                # no task submitted: the worker's grading process was started and imports (waited for here),
                # and it started its kernels' zygote
                assert set(client.run(cluster.worker_is_warm).values()) == {True}
                assert all(client.run(cluster.worker_zygote_pid).values())
                assert all(client.run(zygote_folder_is_the_workers).values())
                assert not any(profiling(client).values())


def test_a_worker_that_closes_leaves_nothing_behind(submissions, tmp_path):
    """A worker started without the preload (no dask_teardown) stops its grading process and zygote
    when it closes, instead of hanging until its nanny kills it, and removes what it unpacked."""
    before = grading_leftovers()
    one = tmp_path / "one-student"
    write_student(one, "ben", {NB00: STUDENTS["ben"][0]()})
    with nanny_warnings() as warnings:
        with restored_environ(), distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                                          host="127.0.0.1", dashboard_address=":0", memory_limit=0,
                                                          local_directory=tmp_path / "dask") as local:
            results = autograde(one, tmp_path / "out", course_root=ROOT, scheduler=local.scheduler_address,
                                timeout=30, progress=False)
            assert [r.student_id for r in results] == ["ben"], results
            assert not [p for p in results[0].problems if "grading failed" in p], results[0].problems
            assert any((tmp_path / "dask").rglob("course-lab-template-*")), "the template is in the worker's folder"
    assert not [w for w in warnings if "killing" in w], warnings  # it exited when asked
    assert not list((tmp_path / "dask").rglob("course-lab-*")), "the worker's template and copies are gone"
    assert grading_leftovers() <= before, "the grading process's folders in /tmp are gone"


def test_a_cluster_grades_as_the_local_pool_does(submissions, local_pool, local_cluster, ta, tmp_path):
    out = tmp_path / "out"
    with distributed.Client(local_cluster.scheduler_address, security=ta) as client:
        client.run(cluster.worker_is_warm)
        zygotes = client.run(cluster.worker_zygote_pid)
        results = autograde(submissions, out, course_root=ROOT, scheduler=local_cluster.scheduler_address,
                            timeout=30, progress=False, security=ta)
        # the zygotes the workers started as they joined graded everyone: the TA's template binds the
        # same site/ and etc/ into the sandbox as the workers made for them
        assert client.run(cluster.worker_zygote_pid) == zygotes
    assert (out / "grades.csv").read_text() == (local_pool / "grades.csv").read_text()
    assert {r.student_id: sum(r.scores.values()) for r in results} == {s: p for s, (_, p) in STUDENTS.items()}
    for student in STUDENTS:  # the feedback and the autograded notebooks came back as data and were written here
        assert (out / "feedback" / student / NB00).with_suffix(".html").is_file(), student
        assert (out / "autograded" / student / "lab4" / NB00).is_file(), student
    assert (out / "gradebook.db").is_file()
    assert not any("grading failed" in p for r in results for p in r.problems)
    # a run again grades only what changed: nothing (the results come from the state file, timings and all)
    again = autograde(submissions, out, course_root=ROOT, scheduler=local_cluster.scheduler_address, timeout=30,
                      progress=False, security=ta)
    assert [(r.student_id, r.seconds) for r in again] == [(r.student_id, r.seconds) for r in results]


def test_a_worker_killed_mid_run_still_leaves_everyone_graded_once(submissions, local_pool, local_cluster, dask_folder,
                                                                   ta, tmp_path):
    client = distributed.Client(local_cluster.scheduler_address, security=ta)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                folder = client.run(lambda dask_worker: dask_worker.local_directory, workers=[busy[0]])[busy[0]]
                time.sleep(3)  # well into a student's grading, which takes about ten seconds here
                os.kill(pid, signal.SIGKILL)
                killed.append((busy[0], pid, Path(folder)))
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    try:
        results = autograde(submissions, tmp_path / "out", course_root=ROOT, scheduler=local_cluster.scheduler_address,
                            timeout=30, progress=False, security=ta)
    finally:
        killer.join(timeout=130)
        client.close()
    assert killed, "no worker was killed: the test proved nothing"
    assert sorted(r.student_id for r in results) == sorted(STUDENTS), "every student exactly once"
    # the killed worker could not clean up: its folder (the template it unpacked, the student's copy)
    # goes when its nanny starts the next worker there, which removes it just before making its own
    # (so the count passes through 1: wait for the restarted worker's folder too)
    killed_folder = killed[0][2]
    deadline = time.monotonic() + 60
    while (killed_folder.exists() or len(worker_folders(dask_folder)) != 2) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not killed_folder.exists(), "the killed worker's folder was left behind"
    assert len(worker_folders(dask_folder)) == 2, worker_folders(dask_folder)
    assert rows(tmp_path / "out") == rows(local_pool), "the same grades as the local pool"
    assert not any("grading failed" in p for r in results for p in r.problems), [r.problems for r in results]


def test_a_worker_with_other_grading_code_refuses(monkeypatch, tmp_path):
    from course_utils.grading.student import GradingJob

    job = GradingJob("ada", {}, [], "d", str(tmp_path), str(tmp_path), str(tmp_path), 30, 6.0, isolate=False)
    with pytest.raises(RuntimeError, match="differs from the TA's"):
        cluster.grade_on_worker(job, b"", "digest", "not-this-machine's")


def test_the_template_travels_without_what_each_worker_makes_itself(tmp_path):
    template = tmp_path / "template"
    for name in ("release", "jupyter", "etc", "site", "solutions"):
        (template / name).mkdir(parents=True)
        (template / name / "f.txt").write_text(name)
    (template / "gradebook.db").write_bytes(b"db")
    unpacked = cluster.worker_template(cluster.pack_template(template), "test-digest-1")
    try:
        assert sorted(p.name for p in unpacked.iterdir()) == ["etc", "gradebook.db", "jupyter", "release", "site",
                                                              "solutions"]
        assert (unpacked / "site" / "f.txt").read_text() == "site" and not (unpacked / "etc" / "f.txt").exists()
        assert (unpacked / "jupyter" / "kernels").is_dir()  # this machine's kernelspec
        assert cluster.worker_template(b"not read again", "test-digest-1") == unpacked
    finally:
        cluster._leave()  # what a worker does when it closes: its templates go
    assert not unpacked.exists()


def test_scheduler_without_the_extra_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed":
            raise ImportError("No module named 'distributed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(ImportError, match=r'course-utils\[cluster\]'):
        cluster.require_distributed()


def test_a_local_cluster_leaves_this_process_environment_as_it_was():
    """Later tests' kernels inherit this environment: Dask's OMP_NUM_THREADS=1 must not stay
    (it once made every notebook test after this module run torch on one thread, 2.5x slower)."""
    with restored_environ():  # whatever this module's cluster fixture left, start from a known state
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"):
            os.environ.pop(name, None)
        before = dict(os.environ)
        with restored_environ():
            with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                          dashboard_address=":0", memory_limit=0):
                changed = dict(os.environ) != before
        assert changed, "Dask no longer changes the environment: restored_environ can go"
        assert dict(os.environ) == before


# ---------------------------------------------------------------- only the TA drives the cluster (issue 33)

def test_a_client_without_the_courses_certificate_cannot_connect(local_cluster, tmp_path):
    """Mutual TLS: a client with certificates of another authority (or none) gets no session, so no
    `Client.run` on the workers and no look at the hidden checks."""
    stranger = cluster_tls.security(cluster_tls.make_certificates(tmp_path / "other"))
    with pytest.raises((OSError, TimeoutError)):
        distributed.Client(local_cluster.scheduler_address, security=stranger, timeout="5s")
    with pytest.raises((OSError, TimeoutError, TypeError, ValueError)):
        distributed.Client(local_cluster.scheduler_address, timeout="5s")


def test_a_plain_scheduler_off_this_machine_is_refused_unless_the_ta_insists(tmp_path):
    with pytest.raises(cluster_tls.InsecureScheduler, match="--insecure-scheduler"):
        autograde(tmp_path, tmp_path / "out", course_root=ROOT, scheduler="tcp://10.20.30.40:8786")
    with pytest.raises(cluster_tls.InsecureScheduler, match="--tls"):
        cluster_tls.check_address("tls://10.20.30.40:8786", None)
    assert cluster_tls.check_address("tcp://127.0.0.1:8786", None) == []  # this machine's loopback
    assert cluster_tls.check_address("localhost:8786", None) == []
    warning = cluster_tls.check_address("tcp://10.20.30.40:8786", None, insecure=True)
    assert warning and warning[0].startswith("WARNING: UNENCRYPTED CLUSTER")


def test_certificates_are_made_once_with_private_keys(tmp_path):
    from course_utils import cli

    assert cli.main(["cluster-certs", str(tmp_path / "certs")]) == 0
    files = sorted(p.name for p in (tmp_path / "certs").iterdir())
    assert files == ["ca-key.pem", "ca.pem", "client-key.pem", "client.pem", "scheduler-key.pem", "scheduler.pem",
                     "worker-key.pem", "worker.pem"]
    assert all((tmp_path / "certs" / f).stat().st_mode & 0o077 == 0 for f in files if f.endswith("-key.pem"))
    assert cli.main(["cluster-certs", str(tmp_path / "certs")]) == 1  # never over the TA's existing keys
    with pytest.raises(FileNotFoundError, match="cluster-certs"):
        cluster_tls.security(tmp_path / "nowhere")
