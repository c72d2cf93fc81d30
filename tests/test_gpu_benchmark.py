"""benchmarks/gpu_full_profile.py without a GPU: nvidia-smi's output, the process tree, the budget."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from course_utils.report import WIDTH

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_full_profile", ROOT / "benchmarks" / "gpu_full_profile.py")
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)

# what `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` prints on a
# two-GPU machine where one process uses both GPUs and another's memory cannot be read
COMPUTE_APPS = """4242, 1530
4242, 250
777, [N/A]
9000, 12000

"""


def test_parse_compute_apps_sums_a_process_over_gpus_and_skips_unreadable_lines():
    assert gpu.parse_compute_apps(COMPUTE_APPS) == {4242: 1780, 9000: 12000}
    assert gpu.parse_compute_apps("No devices were found\n") == {}
    assert gpu.parse_compute_apps("") == {}


def test_parse_memory_used_sums_the_gpus():
    assert gpu.parse_memory_used("1024\n2048\n") == 3072
    assert gpu.parse_memory_used("[N/A]\n") is None


def test_poller_takes_the_kernel_processes_and_falls_back_to_growth_over_the_baseline():
    poller = gpu.GpuMemoryPoller.__new__(gpu.GpuMemoryPoller)
    poller.peak, poller.source, poller._baseline = None, "nvidia-smi, kernel processes", 500
    apps = gpu.parse_compute_apps(COMPUTE_APPS)
    poller.sample(apps, ours={4242, 4243}, total_used=14000)
    poller.sample({4242: 900}, ours={4242}, total_used=1400)  # a smaller reading keeps the peak
    assert poller.peak == 1780 and poller.source == "nvidia-smi, kernel processes"
    poller.sample({}, ours={4242}, total_used=None)  # the kernel has gone: nothing to read
    assert poller.peak == 1780
    hidden = gpu.GpuMemoryPoller.__new__(gpu.GpuMemoryPoller)  # a container: host PIDs in nvidia-smi
    hidden.peak, hidden.source, hidden._baseline = None, "nvidia-smi, kernel processes", 500
    hidden.sample({123456: 2100}, ours={42}, total_used=2600)
    assert hidden.peak == 2100 and hidden.source == "nvidia-smi, GPU total above baseline"


def test_descendants_walks_the_process_tree(tmp_path):
    tree = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1}  # pid: parent pid
    for pid, ppid in tree.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (python (kernel) x) S {ppid} {pid} 0 0\n")
    assert gpu.descendants(10, proc=tmp_path) == {11, 12, 13}
    assert gpu.descendants(13, proc=tmp_path) == set()


def test_notebooks_that_do_not_fit_the_budget_are_skipped_and_said_so(tmp_path):
    paths = sorted((ROOT / "solutions" / "lab4").glob("0[01]_*.ipynb"))
    said = []
    rows = gpu.run_within_budget(paths, profile="grade", out=tmp_path, budget_s=30, notebook_s=60, log=said.append)
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert all("skipped" in line and "less than its 1-min limit" in line for line in said)
    assert json.loads((tmp_path / "results.json").read_text())["notebooks"] == []
    table = gpu.table(rows)
    assert max(len(line) for line in table.splitlines()) <= WIDTH and "did not fit the budget" in table
