"""The `full` profile on a GPU, within a wall-clock budget: seconds, peak GPU memory, numbers.

    python benchmarks/gpu_full_profile.py [--notebooks 01 02] [--budget-minutes 60]
        [--notebook-minutes 15] [--out build/gpu] [--profile full|quick|grade]

Runs the notebooks one after another through `course_utils.notebooks.run_notebooks` (the code
path of `course-lab run`). Each notebook gets `--notebook-minutes` (DESIGN.md: each notebook
<= 15 min on a T4-class GPU): its cells time out then, and a watchdog stops its kernel if the
notebook as a whole runs longer. A notebook starts only when the budget left covers its whole
limit; the others are skipped, and the table says so. Writes OUT/gpu_full_profile.json (per
notebook: status, seconds, peak GPU memory and its source, headline numbers), OUT/results.json
and OUT/index.html as `course-lab run` does, and prints a table.

Peak GPU memory is polled from `nvidia-smi` every half second, for the kernel's processes
(the notebook runs in a separate kernel process, so this process's torch counters see nothing).
Polling measures what the driver has given the process: the CUDA context and everything
PyTorch's caching allocator holds, which is what must fit on the GPU, and which a kernel-side
`torch.cuda.max_memory_allocated()` (live tensors only) would understate by the context and the
cache. The caching allocator keeps what it reserved, so a half-second poll does not miss peaks.
When nvidia-smi reports no process of ours (a container's PID namespace hides them) the GPU's
used memory above its level before the notebook is taken instead; without nvidia-smi (a CPU
machine) memory is not measured, and the table says "n/a".

Data: the full profile needs CIFAR-10, the ResNet-50 weights and ImageNet-A in the data
directory (`course-lab fetch-data`, COURSE_DATA_DIR) on a machine without internet.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.notebooks import NotebookRun, find_notebooks, run_notebooks  # noqa: E402
from course_utils.report import WIDTH, format_value, headline, write_index  # noqa: E402

POLL_SECONDS = 0.5


def parse_compute_apps(text: str) -> dict[int, int]:
    """{pid: MiB} from `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`.
    Lines whose memory is not a number ("[N/A]", "[Insufficient Permissions]") are left out."""
    usage: dict[int, int] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        usage[int(fields[0])] = usage.get(int(fields[0]), 0) + int(fields[1])  # one line per GPU
    return usage


def parse_memory_used(text: str) -> int | None:
    """Total MiB in use over all GPUs from `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits`."""
    values = [int(v.strip()) for v in text.splitlines() if v.strip().isdigit()]
    return sum(values) if values else None


def descendants(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The processes below `pid` (Linux /proc): the kernel this process started, and its workers."""
    children: dict[int, list[int]] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _nvidia_smi(*query: str) -> str | None:
    try:
        return subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


class GpuMemoryPoller:
    """Peak GPU memory (MiB) of this process's descendants while it runs (see the module's text)."""

    def __init__(self, interval: float = POLL_SECONDS):
        self.interval, self.available = interval, shutil.which("nvidia-smi") is not None
        self.peak: int | None = None
        self.source = "not measured: no nvidia-smi" if not self.available else "nvidia-smi, kernel processes"
        self._baseline = parse_memory_used(_nvidia_smi("--query-gpu=memory.used") or "") if self.available else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def sample(self, apps: dict[int, int], ours: set[int], total_used: int | None) -> None:
        """Take one reading: the memory of our processes, else the GPU's growth since the start."""
        mine = [mib for pid, mib in apps.items() if pid in ours]
        if mine:
            value = sum(mine)
        elif total_used is not None and self._baseline is not None and not apps.keys() & ours and apps:
            value, self.source = max(0, total_used - self._baseline), "nvidia-smi, GPU total above baseline"
        else:
            return
        self.peak = value if self.peak is None else max(self.peak, value)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            apps = parse_compute_apps(_nvidia_smi("--query-compute-apps=pid,used_memory") or "")
            used = parse_memory_used(_nvidia_smi("--query-gpu=memory.used") or "") if apps else None
            self.sample(apps, descendants(os.getpid()), used)

    def __enter__(self) -> GpuMemoryPoller:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


class Watchdog:
    """Kills this process's descendants (the notebook's kernel) once `seconds` have passed;
    nbclient then fails the notebook with DeadKernelError."""

    def __init__(self, seconds: float):
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def run_within_budget(paths: list[Path], *, profile: str, out: Path, budget_s: float, notebook_s: float,
                      log=print) -> list[dict]:
    """Run each notebook that still fits the budget; one row per notebook, skipped ones too."""
    deadline = time.monotonic() + budget_s
    rows, runs = [], []
    for i, path in enumerate(paths):
        left = deadline - time.monotonic()
        if left < notebook_s:
            log(f"[{i + 1}/{len(paths)}] skipped {path.stem}: {left / 60:.1f} min of the budget left, "
                f"less than its {notebook_s / 60:.3g}-min limit")
            rows.append({"notebook": path.stem, "status": "skipped", "seconds": None, "peak_gpu_mib": None,
                         "gpu_memory_source": None, "headline": {}, "error": "did not fit the budget"})
            continue
        log(f"[{i + 1}/{len(paths)}] start   {path.stem} (limit {notebook_s / 60:.3g} min)")
        with GpuMemoryPoller() as memory, Watchdog(notebook_s) as watchdog:
            (run,) = run_notebooks([path], profile=profile, out_dir=out, html=True, cell_timeout=int(notebook_s))
        if watchdog.fired:
            run.status, run.error = "failed", f"stopped after its {notebook_s / 60:.3g}-min limit ({run.error})"
        runs.append(run)
        rows.append({"notebook": run.name, "status": run.status, "seconds": run.seconds,
                     "peak_gpu_mib": memory.peak, "gpu_memory_source": memory.source,
                     "headline": {label: value for label, value in headline(run)}, "error": run.error})
        log(f"[{i + 1}/{len(paths)}] {run.status:<7} {run.name}  {run.seconds:.1f} s, peak GPU memory "
            f"{'n/a' if memory.peak is None else f'{memory.peak} MiB'}")
    (out / "results.json").write_text(json.dumps({"profile": profile, "notebooks": [r.__dict__ for r in runs]},
                                                 indent=2) + "\n", encoding="utf-8")
    write_index(runs, out, profile=profile)
    return rows


def table(rows: list[dict]) -> str:
    """notebook, status, seconds, peak MiB; the headline numbers (or the error) wrapped below."""
    import textwrap

    width = max([8] + [len(r["notebook"]) for r in rows])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'seconds':>7}  {'peak GPU MiB':>12}", "-" * (width + 34)]
    for r in rows:
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        peak = "n/a" if r["peak_gpu_mib"] is None else str(r["peak_gpu_mib"])
        lines.append(f"{r['notebook']:<{width}}  {r['status']:<7}  {seconds:>7}  {peak:>12}")
        text = r["error"] if r["status"] != "ok" else " · ".join(f"{k} {format_value(v)}" for k, v in r["headline"].items())
        lines += textwrap.wrap(" ".join(str(text).split()), WIDTH, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="*", metavar="PREFIX", help="only notebooks whose name starts with these")
    parser.add_argument("--profile", default="full", choices=["full", "quick", "grade"],
                        help="default full; quick or grade try the script out on a CPU")
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="wall-clock budget of the whole run")
    parser.add_argument("--notebook-minutes", type=float, default=15.0, help="limit of one notebook (DESIGN.md: 15)")
    parser.add_argument("--out", default="build/gpu", help="output folder (default: build/gpu)")
    parser.add_argument("--solutions", default=str(ROOT / "solutions" / "lab4"))
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = find_notebooks(args.solutions, args.notebooks)
    print(f"{len(paths)} notebook(s), '{args.profile}' profile, budget {args.budget_minutes:g} min, "
          f"{args.notebook_minutes:g} min per notebook; nvidia-smi: {shutil.which('nvidia-smi') or 'none'}", flush=True)
    start = time.monotonic()
    rows = run_within_budget(paths, profile=args.profile, out=out, budget_s=args.budget_minutes * 60,
                             notebook_s=args.notebook_minutes * 60, log=lambda line: print(line, flush=True))
    report = {"profile": args.profile, "budget_minutes": args.budget_minutes,
              "notebook_minutes": args.notebook_minutes, "seconds": round(time.monotonic() - start, 1),
              "notebooks": rows}
    (out / "gpu_full_profile.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    print(table(rows))
    print(f"\n{out / 'gpu_full_profile.json'}, report: {out / 'index.html'}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
