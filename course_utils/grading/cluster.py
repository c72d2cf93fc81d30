"""Grading on a Dask cluster: `course-lab autograde SUBMISSIONS --out OUT --scheduler ADDRESS`.

Workers share no file system with the TA's machine:

- the prepared course template (`autograde.prepare_template`) travels once, as a gzipped tar
  scattered to every worker (`Client.scatter(..., broadcast=True)`); each worker process
  unpacks it once into a temporary folder of its own and installs the sandbox's kernelspec
  for its own Python;
- a task grades one student (`student.grade_student`, in the same bubblewrap sandbox as on
  the TA's machine, in a single-threaded grading process the worker keeps: `_in_helper`) and
  returns the result and the feedback pages as data; only the TA's machine writes OUT;
- a worker refuses to grade when its hidden checks or grading code differ from the TA's (a
  different course_utils installed there would grade differently).

One future per student: Dask reruns the task of a worker that dies on another worker (up to
`distributed.scheduler.allowed-failures` times), and the TA's machine records each student
once, when its future completes. Every process of the cluster speaks mutual TLS with the
certificates of `cluster_tls.py` (a plain scheduler off loopback is refused). `distributed`
is an optional extra: `pip install "course-utils[cluster]"`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import shutil
import tarfile
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Iterator

from . import sandbox, student

# what each worker makes for its own Python (the kernelspec and the sandbox's /etc); release/
# travels (a few hundred KB): the worker highlights its code once for every feedback page
NOT_SENT = ("jupyter", "etc")
_templates: dict[str, Path] = {}
_helpers: dict = {}
_lock = threading.Lock()
_daemon_lock = threading.Lock()


def require_distributed():
    """The `distributed` module, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError('grading on a Dask cluster needs the optional extra: pip install "course-utils[cluster]" '
                          "(dask.distributed), on the TA's machine and on every worker") from err
    return distributed


def grading_code_digest() -> str:
    """A digest of this machine's hidden checks and grading code: TA and workers must agree."""
    import course_utils

    package = Path(course_utils.__file__).parent
    h = hashlib.sha256()
    for path in sorted((package / "checks").glob("*.py")) + sorted((package / "grading").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def pack_template(template: Path) -> bytes:
    """The template as a gzipped tar, without what `NOT_SENT` names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=3) as tar:
        for path in sorted(Path(template).iterdir()):
            if path.name not in NOT_SENT:
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


def worker_template(bundle: bytes, digest: str) -> Path:
    """The template unpacked on this worker (once per worker process and template digest)."""
    with _lock:
        ready = _templates.get(digest)
        if ready is not None and ready.is_dir():
            return ready
        root = Path(tempfile.mkdtemp(prefix=f"course-lab-template-{digest[:8]}-", dir=_worker_folder()))
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            tar.extractall(root, filter="data")  # no links, devices or paths outside root
        sandbox.install_kernelspec(root / "jupyter")
        sandbox.write_etc(root / "etc")
        _templates[digest] = root
        return root


def _helper():
    """This Dask worker's grading process: one single-threaded process per worker, spawned once
    and kept, where grading forks its nbgrader runs and kernels from preloaded processes as in
    the local pool (`forked.py`, `zygote.py`). A Dask worker runs tasks in threads, and a
    process with threads must not fork."""
    import concurrent.futures
    import multiprocessing
    import multiprocessing.util

    with _lock:
        pool = _helpers.get("pool")
        if pool is None:
            pool = _helpers["pool"] = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=student.worker_setup)
            if not _helpers.get("leaves"):
                # at the worker process's exit, before multiprocessing joins the helper (for ever, unless
                # told to stop) and before its queues' own finalizers (priority 10) close their feeders
                multiprocessing.util.Finalize(None, _leave, exitpriority=100)
                _helpers["leaves"] = True
        return pool


def _in_helper(function, *args):
    """`function(*args)` in this worker's grading process (`_helper`), started again if it died."""
    from concurrent.futures.process import BrokenProcessPool

    for attempt in (1, 2):
        pool = _helper()
        try:
            return _submit_from_daemon(pool, function, *args).result()
        except BrokenProcessPool:
            with _lock:
                if _helpers.get("pool") is pool:
                    del _helpers["pool"]
            if attempt == 2:
                raise


def warm_helper(local_directory: str | None = None):
    """Start this worker's grading process and have it import what grading needs (nbgrader,
    torch, the hidden checks: `forked.preload`, about 10 s on one core) and start its kernels'
    zygote (`student.warm_worker`) now, not with the worker's first student. Returns that
    warm-up's future: run from the TA's client when it connects, it does not wait, so the
    workers import while the TA's machine prepares the template. `local_directory`: the Dask
    worker's (`_worker_folder` cannot find a worker still starting, as in `dask_setup`)."""
    with _lock:
        folder = _helpers.get("sandbox")
        if folder is None:  # the zygote's site/ and etc/, removed with the templates (`_leave`)
            folder = _helpers["sandbox"] = Path(tempfile.mkdtemp(prefix="course-lab-sandbox-",
                                                                 dir=local_directory or _worker_folder()))
    return _submit_from_daemon(_helper(), student.warm_worker, str(folder))


def _grading_imports_done() -> bool:
    from . import forked

    return forked._PRELOADED


def worker_is_warm() -> bool:
    """On a worker (`Client.run(worker_is_warm)`): whether its grading process runs with
    grading's imports done (waiting for them if they are under way), so that its next student
    pays for neither."""
    return _helper_started() and _in_helper(_grading_imports_done)


def worker_zygote_pid() -> int | None:
    """On a worker (`Client.run(worker_zygote_pid)`): the PID of its grading process's zygote (the
    process its kernels fork from), None if it has none."""
    return _in_helper(student.worker_zygote_pid) if _helper_started() else None


def _helper_started() -> bool:
    with _lock:
        return "pool" in _helpers


async def dask_setup(worker) -> None:
    """`dask worker ADDRESS --preload course_utils.grading.cluster`: the worker joins the
    cluster with its grading process started and preloaded (`warm_helper`)."""
    import asyncio

    _stop_profiling(worker)
    try:
        await asyncio.wrap_future(warm_helper(worker.local_directory))
    except Exception as err:  # the worker joins anyway
        _not_warmed(err)


async def dask_teardown(worker) -> None:
    """The grading process leaves with its worker (`_leave`)."""
    import asyncio

    await asyncio.to_thread(_leave)


def _leave() -> None:
    """When the worker closes (`dask_teardown`, or its process's exit for a worker started
    without the preload): its grading process stops its zygote and exits, and the folders the
    worker made go (the templates it unpacked, its zygote's site/). A worker that is killed
    cannot: its folder under the worker's local directory (`_worker_folder`) is removed by the
    next worker Dask starts there."""
    with _lock:
        pool = _helpers.pop("pool", None)
        folders = list(_templates.values())
        _templates.clear()
        if "sandbox" in _helpers:
            folders.append(_helpers.pop("sandbox"))
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _worker_folder() -> str | None:
    """The Dask worker's local directory (None outside a worker): what a task unpacks or copies
    goes there, so that a killed worker's files are removed by the next worker Dask starts on the
    machine (it removes the folders of workers that are gone). The grading process's sockets stay
    in /tmp: a socket's path must be short."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def _submit_from_daemon(pool, function, *args):
    """`pool.submit`, which may start the helper, from a Dask worker: the nanny runs workers as
    daemonic processes, and multiprocessing refuses them children so that none is orphaned when
    the daemon is killed. The helper cannot be orphaned: it gets SIGKILL when the worker dies
    (PR_SET_PDEATHSIG, its initializer). So the flag is lifted for the start only."""
    import multiprocessing

    with _daemon_lock:
        config = multiprocessing.current_process()._config
        daemon = config.get("daemon")
        config["daemon"] = False
        try:
            return pool.submit(function, *args)
        finally:
            if daemon is not None:
                config["daemon"] = daemon


def grade_on_worker(job, bundle: bytes, template_digest: str, code_digest: str):
    """Grade one student on a worker: (StudentResult, {file name: bytes}): the feedback pages, and the
    autograded notebooks as `notebooks/<stem>.ipynb`."""
    here = grading_code_digest()
    if here != code_digest:
        raise RuntimeError(f"this worker's course_utils grading code ({here}) differs from the TA's ({code_digest}): "
                           "install the same version of the course package on every worker")
    if job.isolate:
        sandbox.require_bubblewrap()
    template = worker_template(bundle, template_digest)
    work = Path(tempfile.mkdtemp(prefix="course-lab-work-", dir=_worker_folder()))
    try:
        local = dataclasses.replace(job, template=str(template), work_dir=str(work / "work"),
                                    feedback_dir=str(work / "feedback"), notebooks_dir=str(work / "notebooks"))
        result = _in_helper(student.grade_student, local)
        folder = work / "feedback" / job.student_id
        files = {p.name: p.read_bytes() for p in sorted(folder.glob("*.html"))} if folder.is_dir() else {}
        files.update({f"notebooks/{p.name}": p.read_bytes()
                      for p in sorted((work / "notebooks" / job.student_id).glob("*.ipynb"))})
        return result, files
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def connected(address: str, security=None):
    """A client of the scheduler at `address` (with `security`: `cluster_tls.security`). Every
    worker starts its grading process's imports at once (`warm_helper`), so that they overlap
    the TA's machine preparing the template."""
    distributed = require_distributed()
    client = distributed.Client(address, timeout="30s", security=security)
    try:
        client.run(_start_warming)
        yield client
    finally:
        client.close()


def _start_warming(dask_worker=None) -> None:
    if dask_worker is not None:
        _stop_profiling(dask_worker)
    try:
        warm_helper(dask_worker.local_directory if dask_worker is not None else None)
    except Exception as err:  # only a head start
        _not_warmed(err)


def _stop_profiling(worker) -> None:
    """Stop the worker's statistical profiler (run in its event loop). It samples the threads that
    run tasks every 10 ms, and here they only wait for the grading process (which it cannot
    see): it would profile nothing, for half of what an idle worker costs (1.9% of a core
    with it, 1.0% without, measured while a task waits)."""
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            callback.stop()


def _not_warmed(err: Exception) -> None:
    """A warm-up is only a head start: the worker's first task starts the grading process again
    (and fails with the reason if it cannot)."""
    import logging

    logging.getLogger("distributed.worker").warning("course-lab: the grading process did not warm up: %r", err)


def grade_on_cluster(client, jobs: list, template: Path, template_digest: str) -> Iterator[tuple]:
    """Submit one task per job through `client` (`connected`); yield (job, (result, files) or
    the exception) as tasks finish, in any order.

    A task that fails is submitted once more before its exception is yielded: a student's own
    failures come back as a result, never as an exception, so an exception is the cluster's (a
    worker killed or restarting under the task), and a second worker usually grades the student."""
    distributed = require_distributed()
    if not jobs:
        return
    bundle = client.scatter(pack_template(template), broadcast=True, hash=False)
    code = grading_code_digest()

    def submit(job):
        return client.submit(grade_on_worker, job, bundle, template_digest, code, pure=False,
                             key=f"grade-{job.student_id}-{uuid.uuid4().hex[:8]}")

    futures = {submit(job): job for job in jobs}
    retried: set[str] = set()
    finished = distributed.as_completed(list(futures))
    for future in finished:
        job = futures[future]
        try:
            yield job, future.result()
        except Exception as err:  # a failed task must not cost the other students their grades
            if job.student_id in retried:
                yield job, err
                continue
            retried.add(job.student_id)
            again = submit(job)
            futures[again] = job
            finished.add(again)
