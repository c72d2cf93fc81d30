"""A student's share of the grading machine: one cgroup for everything their code starts.

Per-process limits (`setrlimit`) bound one process; a student's kernel can fork, and its
forks' memory, CPU and tmpfs pages add up. So every process of a student's grading that runs
their code (the kernels, whatever they fork or mount) lives in one cgroup, a `StudentGroup`,
with a memory limit (swap included, tmpfs pages included: the kernel charges them to the
process that writes them), a CPU quota of one core (so a classmate graded on the other core
is never slowed down), and a process limit. Taking the machine's own controllers:

- **cgroup v2** (most systemd hosts): the groups are made under this process's own cgroup,
  which must be delegated to it: its own and nothing else's (a `systemd-run --scope -p
  Delegate=yes` scope, which `course-lab autograde` starts itself in when it needs one). The
  grader's processes move to a leaf `grader`, the controllers are enabled for the children,
  and each student gets a sibling leaf.
- **cgroup v1** (older hosts, and CI's machines, which mount `memory`, `cpu` and `pids` as
  v1): one folder per student in each of the three hierarchies, under this process's own
  cgroup there (root may write them; a TA who was handed the folders may too).

Where neither can be had, `detect` raises `LimitsUnavailable` with what to do; grading then
refuses, unless the TA says `--no-limits`.

Processes join a group by writing their PID to its `cgroup.procs` files (`join`, from outside
the sandbox: the kernel launcher does it for the kernels; see `zygote.launch`).
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import signal
import time
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "pids")
PERIOD_US = 100_000
HINT = ("Per-student limits need cgroups: on a systemd host (cgroup v2) run course-lab autograde as a user with a "
        "systemd user session (it starts itself in `systemd-run --user --scope -p Delegate=yes`), or as root; on a "
        "cgroup v1 host, as root. Or pass --no-limits to grade without them (one student's processes can then take "
        "the machine's memory and CPU from the others; the report says so in its first line).")


class LimitsUnavailable(RuntimeError):
    """No cgroup hierarchy this process may make students' groups in."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one student's processes get, together."""

    memory_bytes: int
    cpus: float = 1.0
    processes: int = 512


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of the cgroup file systems."""
    found = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        found.append((point, tail[0], set(tail[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            paths[name] = path
    return paths


class StudentGroup:
    """One student's cgroup (in one or three hierarchies). Made by `Hierarchy.group`."""

    def __init__(self, folders: list[Path], limits: Limits):
        self.folders, self.limits = folders, limits

    @property
    def procs_files(self) -> list[str]:
        """The files a process's PID is written to, to join (the kernel launcher gets these)."""
        return [str(f / "cgroup.procs") for f in self.folders]

    def join(self, pid: int = 0) -> None:
        join(self.procs_files, pid or os.getpid())

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders:
            found |= {int(p) for p in _read(folder / "cgroup.procs").split()}
        return found

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL every process in the group, until none is left; whether it is empty."""
        deadline = time.monotonic() + timeout
        kill_file = self.folders[0] / "cgroup.kill"
        while True:
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            if kill_file.exists():  # cgroup v2 (Linux 5.14): the kernel kills them all at once
                try:
                    _write(kill_file, "1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)

    def usage(self) -> dict[str, int]:
        """What the group used and hit: peak memory, OOM kills, refused forks, throttled periods."""
        return usage(self.folders)

    def remove(self) -> None:
        """Kill what is left and remove the group's folders (a failure is left to the next sweep)."""
        self.kill()
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:
                pass


def join(procs_files: list[str], pid: int) -> None:
    """Move process `pid` into the group whose `cgroup.procs` files these are."""
    for path in procs_files:
        _write(Path(path), str(pid))


def _field(text: str, name: str) -> int:
    match = re.search(rf"^{re.escape(name)}\s+(\d+)", text, re.M)
    return int(match.group(1)) if match else 0


def usage(folders: list[Path]) -> dict[str, int]:
    out = {"memory_peak": 0, "oom_kills": 0, "forks_refused": 0, "throttled": 0}
    for folder in folders:
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            text = _read(folder / name).strip()
            if text.isdigit():
                out["memory_peak"] = max(out["memory_peak"], int(text))
        out["oom_kills"] += _field(_read(folder / "memory.events"), "oom_kill")
        out["oom_kills"] += _field(_read(folder / "memory.oom_control"), "oom_kill")
        out["forks_refused"] += _field(_read(folder / "pids.events"), "max")
        out["throttled"] += _field(_read(folder / "cpu.stat"), "nr_throttled")
    return out


class Hierarchy:
    """Where this grading run makes its students' groups: a folder per run in each hierarchy."""

    version = 0

    def __init__(self, bases: dict[str, Path]):
        self.bases = bases  # controller (or "" for v2) -> the run's folder

    def group(self, name: str, limits: Limits) -> StudentGroup:
        raise NotImplementedError

    def close(self) -> None:
        """Remove the run's folders (what students left was removed with each group)."""
        for base in self.bases.values():
            for child in sorted(base.iterdir()) if base.is_dir() else []:
                if child.is_dir():
                    StudentGroup([child], Limits(0)).remove()
            try:
                base.rmdir()
            except OSError:
                pass


def _slot(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]", "_", name)[:48] + "-" + secrets.token_hex(4)


class V1(Hierarchy):
    """cgroup v1: the memory, cpu and pids hierarchies, each with the student's own folder."""

    version = 1

    def group(self, name: str, limits: Limits) -> StudentGroup:
        slot = _slot(name)
        folders = {c: self.bases[c] / slot for c in CONTROLLERS}
        for folder in folders.values():
            folder.mkdir()
        group = StudentGroup(list(folders.values()), limits)
        try:
            memory = folders["memory"]
            _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # swap counts too, where it is accounted
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            _write(folders["cpu"] / "cpu.cfs_period_us", str(PERIOD_US))
            _write(folders["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * PERIOD_US)))
            _write(folders["pids"] / "pids.max", str(limits.processes))
        except OSError:
            group.remove()
            raise
        return group


class V2(Hierarchy):
    """cgroup v2: a leaf per student beside the grader's own leaf, in a delegated cgroup."""

    version = 2

    def __init__(self, bases: dict[str, Path], controllers: tuple[str, ...] = CONTROLLERS):
        super().__init__(bases)
        self.controllers = controllers

    def group(self, name: str, limits: Limits) -> StudentGroup:
        folder = self.bases[""] / _slot(name)
        folder.mkdir()
        group = StudentGroup([folder], limits)
        try:
            if "memory" in self.controllers:
                _write(folder / "memory.max", str(limits.memory_bytes))
                if (folder / "memory.swap.max").exists():
                    _write(folder / "memory.swap.max", "0")
            if "cpu" in self.controllers:
                _write(folder / "cpu.max", f"{int(limits.cpus * PERIOD_US)} {PERIOD_US}")
            if "pids" in self.controllers:
                _write(folder / "pids.max", str(limits.processes))
        except OSError:
            group.remove()
            raise
        return group


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        status = _read(Path(f"/proc/{pid}/status"))
        match = re.search(r"^PPid:\s+(\d+)", status, re.M)
        if not match:
            break
        pid = int(match.group(1))
        chain.append(pid)
    return chain


def _family_only(members: set[int]) -> bool:
    """Whether `members` are this process, its ancestors and their descendants within the group:
    one process tree that this process is part of (a systemd scope started for the grader, a
    Dask worker's nanny, worker and grading process), not a login session's other programs."""
    tops = [pid for pid in [os.getpid(), *_ancestors(os.getpid())] if pid in members]
    top = tops[-1] if tops else os.getpid()
    return all(pid == top or top in _ancestors(pid) for pid in members)


def v2_problem(mount: Path, own: str, controllers: tuple[str, ...] = CONTROLLERS) -> str | None:
    """Why this process's own v2 cgroup cannot hold its students' groups (None: it can)."""
    cgroup = mount / own.lstrip("/")
    available = set(_read(cgroup / "cgroup.controllers").split())
    missing = [c for c in controllers if c not in available]
    if missing:
        return f"cgroup v2 here does not delegate {', '.join(missing)} to this process's cgroup ({cgroup})"
    if not os.access(cgroup / "cgroup.subtree_control", os.W_OK) or not os.access(cgroup, os.W_OK):
        return f"this process may not make cgroups in {cgroup} (not delegated to it)"
    members = {int(p) for p in _read(cgroup / "cgroup.procs").split()}
    if not _family_only(members):
        return f"this process's cgroup {cgroup} holds other programs too; it needs one of its own"
    return None


def _v2(mount: Path, own: str, controllers: tuple[str, ...]) -> V2:
    """Take this process's own v2 cgroup for grading (delegated, and its family's alone): its
    processes move to a leaf `grader`, the controllers go to the children."""
    problem = v2_problem(mount, own, controllers)
    if problem:
        raise LimitsUnavailable(problem + ". " + HINT)
    cgroup = mount / own.lstrip("/")
    leaf = cgroup / "grader"
    leaf.mkdir(exist_ok=True)
    for pid in _read(cgroup / "cgroup.procs").split():
        try:
            _write(leaf / "cgroup.procs", pid)
        except OSError:  # (a process that just ended)
            pass
    _write(cgroup / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))
    base = cgroup / f"course-lab-{os.getpid()}"
    base.mkdir(exist_ok=True)
    _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))
    return V2({"": base}, controllers)


def unified_own() -> tuple[Path, str] | None:
    """(the cgroup v2 mount, this process's path in it) where v2 has the memory, cpu and pids
    controllers (a hybrid host's v2 mount without them is not a v2 host for this)."""
    own = _own_paths()
    for point, kind, _ in _mounts():
        available = set(_read(Path(point) / "cgroup.controllers").split()) if kind == "cgroup2" else set()
        if "" in own and set(CONTROLLERS) <= available:
            return Path(point), own[""]
    return None


def detect() -> Hierarchy:
    """The hierarchy this grading run uses: v2 where it has the three controllers, else v1."""
    mounts = _mounts()
    own = _own_paths()
    unified = unified_own()
    problems = []
    if unified is not None:
        try:
            return _v2(*unified, CONTROLLERS)
        except LimitsUnavailable as err:
            problems.append(str(err).split(". ")[0])
        except OSError as err:
            problems.append(f"cgroup v2: {err}")
    v1 = {}
    for point, kind, options in mounts:
        for controller in CONTROLLERS:
            if kind == "cgroup" and controller in options and controller in own:
                v1[controller] = Path(point) / own[controller].lstrip("/")
    if len(v1) == len(CONTROLLERS):
        bases = {c: folder / f"course-lab-{os.getpid()}" for c, folder in v1.items()}
        try:
            for base in bases.values():
                base.mkdir(exist_ok=True)
            return V1(bases)
        except OSError as err:
            problems.append(f"cgroup v1: cannot make groups under {next(iter(v1.values()))} ({err.strerror})")
            for base in bases.values():
                try:
                    base.rmdir()
                except OSError:
                    pass
    elif not any(kind == "cgroup2" for _, kind, _ in mounts):
        problems.append("no cgroup file system is mounted")
    else:
        problems.append("cgroup v1 has not all of memory, cpu and pids mounted")
    raise LimitsUnavailable("; ".join(problems) + ". " + HINT)


def sweep() -> None:
    """Remove the empty run folders of grading runs whose process is gone (a killed grader's)."""
    own = _own_paths()
    for point, kind, options in _mounts():
        names = [""] if kind == "cgroup2" else [c for c in CONTROLLERS if c in options]
        for name in names:
            if name not in own:
                continue
            parent = Path(point) / own[name].lstrip("/")
            for base in (parent, parent.parent):  # v2: the run folder is beside the grader's leaf
                for run in base.glob("course-lab-*") if base.is_dir() else []:
                    pid = run.name.rsplit("-", 1)[-1]
                    if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                        Hierarchy({name: run}).close()
