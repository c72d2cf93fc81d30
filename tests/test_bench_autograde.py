"""benchmarks/bench_autograde.py's order of runs: what is compared is measured side by side in time."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_autograde", ROOT / "benchmarks" / "bench_autograde.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_each_paths_two_runs_are_neighbours():
    order = bench.cluster_schedule(2, 1)
    assert sorted(order) == sorted({(label, w) for label in bench.PATHS for w in (1, 2)})
    for label in bench.PATHS:
        assert abs(order.index((label, 1)) - order.index((label, 2))) == 1


@pytest.mark.parametrize("seconds_one, seconds_two", [(230, 120), (200, 200), (260, 100)])
def test_two_mirrored_rounds_give_every_run_the_same_mean_moment(seconds_one, seconds_two):
    """A linear drift of the box's speed then falls on every row alike, whatever the runs last."""
    clock, moments = 0.0, {}
    for run in bench.cluster_schedule(2, 2):
        length = seconds_one if run[1] == 1 else seconds_two
        moments.setdefault(run, []).append(clock + length / 2)
        clock += length
    means = {run: sum(m) / len(m) for run, m in moments.items()}
    assert len(means) == 6 and all(len(m) == 2 for m in moments.values())
    assert max(means.values()) - min(means.values()) < 1e-9, means


def test_against_a_revision_alternates_in_mirrored_rounds():
    """`--against REV --repeats 2`: the revision, the working tree, then the other way round."""
    assert bench.compare_schedule(1) == ["revision", "working tree"]
    assert bench.compare_schedule(2) == ["revision", "working tree", "working tree", "revision"]
