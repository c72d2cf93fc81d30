"""The notebooks: they run on every profile, the release is generated from the solutions,
and they follow nbgrader's rules (unique grade ids, no outputs, no stderr in graded cells)."""
import json
import os
from pathlib import Path

import nbformat
import pytest

from course_utils.notebooks import find_notebooks, generate_release, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lab4"
RELEASE = ROOT / "labs" / "lab4"
NOTEBOOKS = find_notebooks(SOLUTIONS)
NAMES = [p.stem for p in NOTEBOOKS]

# What the quick profile must show (the issues' "numbers the quick profile must show").
QUICK_EXPECTATIONS = {
    "00_getting_started": {"digits_test_accuracy": (0.95, 1.0), "digits-m_test_accuracy": (0.95, 1.0)},
    # Digits-A (issue 12): the filter model fails every kept image by construction and does well on a random
    # control; every model never used for filtering loses far more on the kept images than on the control (measured
    # gaps 0.49-0.60, over 36 seed triples never below 0.41), a two-model filter transfers further, the non-filter
    # CNN is wrong and sure on the kept images, and the filter keeps scale/background/rotation, never stroke width
    "01_natural_adversarial_examples": {"digits_a_filter_filtered_accuracy": (0.0, 0.0),
                                        "digits_a_filter_control_accuracy": (0.6, 0.95),
                                        # against a control matched by transformation the gaps shrink (issue 35:
                                        # 44/43/32/30 points against 55/53/48/48) but stay large
                                        "digits_a_min_matched_gap": (0.15, 1.0),
                                        "digits_a_min_transfer_gap": (0.3, 1.0), "digits_a_mlp_gap": (0.3, 1.0),
                                        "digits_a_logistic_gap": (0.3, 1.0), "digits_a_seed_gap_mean": (0.4, 1.0),
                                        "digits_a_seed_gap_sd": (0.0, 0.1),
                                        "digits_a_two_model_filtered_accuracy": (0.0, 0.2),
                                        "digits_a_calibration_filtered": (0.4, 1.0),
                                        "digits_a_calibration_control": (0.0, 0.25),
                                        "digits_a_aurra_filtered": (0.0, 0.4), "digits_a_aurra_control": (0.8, 1.0),
                                        "digits_a_stroke_and_blur_max_ratio": (0.0, 0.3)},
    # the lecture's claims on plain digits: accurate, yet brittle under PGD
    "02_synthetic_adversarial_examples": {"clean_accuracy": (0.95, 1.0), "pgd_accuracy": (0.0, 0.10),
                                          # random noise of the same size does almost nothing; PGD beats FGSM image by image
                                          "random_sign_accuracy": (0.90, 1.0), "fgsm_only_fooled_fraction": (0.0, 0.02),
                                          "grey_pgd_accuracy": (0.0, 0.30),
                                          # "too linear": near-straight logits over the ball; FGSM near a linear model's
                                          # exact worst case (which no attack can beat)
                                          "true_logit_linearity_r2": (0.90, 1.0), "linear_fgsm_above_worst_case": (0.0, 0.10),
                                          # high dimension: ||w||_1/||w||_2 grows like sqrt(d), i.e. 4x from 16 to 64 px
                                          "l1_over_l2_growth": (2.5, 5.0), "largest_size_random_sign_accuracy": (0.90, 1.0),
                                          # stickers and eyeglasses: no eps-ball, only a region
                                          "eyeglasses_success_rate": (0.30, 1.0), "largest_sticker_success_rate": (0.80, 1.0)},
    # adversarial training buys robustness at little clean cost; FGSM training at a large eps
    # is robust to FGSM, not to PGD, where PGD training at that eps finds some robustness
    "03_robustness_and_defences": {"standard_clean_accuracy": (0.95, 1.0), "standard_pgd_accuracy": (0.0, 0.10),
                                   "adversarial_pgd_accuracy": (0.50, 1.0), "adversarial_clean_accuracy": (0.85, 1.0),
                                   "overfit_pgd_accuracy": (0.0, 0.10), "overfit_fgsm_minus_pgd": (0.25, 1.0),
                                   # limits: the robust model falls at 2 eps and gains nothing under rotation or a
                                   # photo background; stickers still reach their target
                                   "adversarial_linf_2eps_accuracy": (0.0, 0.25), "rotation_gain": (-0.15, 0.10),
                                   "background_gain": (-0.15, 0.10), "adversarial_largest_sticker_success": (0.4, 1.0),
                                   # at the large eps, which no test digit's neighbour of another class is within
                                   # 2 eps of, PGD training works where FGSM training collapsed; the infeasible eps
                                   # overlaps other digits
                                   "pgd_large_pgd_accuracy": (0.15, 1.0), "overlap_fraction_eps": (0.0, 0.02),
                                   "overlap_fraction_eps_large": (0.0, 0.02), "overlap_fraction_eps_infeasible": (0.1, 1.0),
                                   # transfer attacks: weaker than white-box on the robust model (no masking)
                                   "adversarial_transfer_minus_pgd": (0.0, 1.0)},
    # each pretext task's probe beats random init by more than the spread over label draws
    "04_rotation": {"rotation_probe_margin": (0.0, 1.0)},
    "05_patch_localization": {"patch_probe_margin": (0.0, 1.0)},
    # at equal compute the patch and rotation probes beat random init beyond the spread over seeds (SimCLR, at this
    # budget, does not: said in the notebook); colour distortion makes SimCLR's features, flips on digits cost them
    "06_simclr": {"patch_probe_margin": (0.0, 1.0), "rotation_probe_margin": (0.0, 1.0),
                  "simclr_colour_effect": (0.05, 1.0), "simclr_flip_effect": (-1.0, 0.0),
                  # label efficiency: the best pretext encoder's paired gain over random init at the most labels;
                  # flips and rotations change what a digit is
                  "label_curve_best_gain_most": (0.05, 0.30), "flip_kept_class_supervised": (0.05, 0.40),
                  "rotated_six_called_nine": (0.40, 1.0)},
    # clustering: the patch-localization encoder beats its random init (raw pixels may beat both: said in the
    # notebook); video: pointing into a coloured reference frame colours and tracks where copying in place does not
    "07_beyond_classification": {"patch_cluster_nmi_margin": (0.0, 1.0), "video_pointer_mse": (0.0, 0.005),
                                 "video_colocated_mse": (0.03, 0.12), "video_pointer_mask_iou": (0.6, 1.0)},
}


def _run(profile, out_dir, env=None):
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        # 10 min a cell (the slowest quick cell takes under 2 on 2 cores): a cell stuck in nbclient (#312) costs
        # 10 min and a second run of its notebook, not 30 min and a failure
        return {r.name: r for r in run_notebooks(NOTEBOOKS, profile=profile, out_dir=out_dir, cell_timeout=600)}
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="session")
def quick_runs(tmp_path_factory):
    return _run("quick", tmp_path_factory.mktemp("quick"))


@pytest.fixture(scope="session")
def grade_runs(tmp_path_factory):
    # as nbgrader runs them: NBGRADER_EXECUTION set, so the profile resolves to `grade`
    return _run("quick", tmp_path_factory.mktemp("grade"), env={"NBGRADER_EXECUTION": "autograde"})


def _grade_cells(nb):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_solution_runs_on_the_quick_profile(quick_runs, name):
    run = quick_runs[name]
    assert run.status == "ok", run.error
    assert Path(run.html).stat().st_size > 10_000
    for key, (low, high) in QUICK_EXPECTATIONS.get(name, {}).items():
        assert low <= run.results[key] <= high, f"{name}: {key} = {run.results[key]}, expected in [{low}, {high}]"
    if name == "02_synthetic_adversarial_examples":  # certified (no box) <= exact worst case in [0, 1] <= FGSM
        r = run.results
        assert r["linear_certified_accuracy"] <= r["linear_worst_case_accuracy"] + 1e-9 <= r["linear_fgsm_accuracy"] + 2e-9
    if name == "01_natural_adversarial_examples":
        r = run.results
        assert 0 < r["digits_a_matched_share_of_gap"] < 1, r["digits_a_matched_share_of_gap"]
        assert r["digits_a_two_model_filtered_accuracy"] < r["digits_a_one_model_filtered_accuracy"]
        assert {"background", "scale"} <= set(r["digits_a_top_cues"]), r["digits_a_top_cues"]


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_solution_runs_on_the_grade_profile_with_silent_graded_cells(grade_runs, name):
    run = grade_runs[name]
    assert run.status == "ok", run.error
    nb = nbformat.read(run.executed, as_version=4)
    assert "Profile 'grade'" in json.dumps(nb.cells[3].get("outputs", [])) or any(
        "Profile 'grade'" in json.dumps(c.get("outputs", [])) for c in nb.cells)
    for cell in _grade_cells(nb):
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        for output in cell.outputs:
            assert output.output_type != "error", f"{name}/{grade_id} fails on the solution"
            assert not (output.output_type == "stream" and output.name == "stderr"), \
                f"{name}/{grade_id} writes to stderr, which nbgrader scores 0: {output.text[:300]}"


def test_release_is_generated_from_the_solutions(tmp_path):
    generate_release(ROOT, tmp_path)
    fresh = sorted(p.name for p in (tmp_path / "lab4").glob("*.ipynb"))
    assert fresh == sorted(p.name for p in RELEASE.glob("*.ipynb")), "run `course-lab release` and commit labs/"
    for name in fresh:
        want = nbformat.read(tmp_path / "lab4" / name, as_version=4)
        have = nbformat.read(RELEASE / name, as_version=4)
        assert [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in have.cells] == \
               [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in want.cells], \
               f"labs/lab4/{name} differs from the release of solutions/: run `course-lab release` and commit labs/"


@pytest.mark.parametrize("path", NOTEBOOKS + sorted(RELEASE.glob("*.ipynb")), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_notebook_follows_the_house_rules(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in code), "a papermill `parameters` cell is missing"
    intro = nb.cells[0].source
    assert "Learning goals" in intro and "Points" in intro and "quick" in intro and "full" in intro
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {path.name}: {sorted(i for i in ids if ids.count(i) > 1)}"


def test_grade_ids_are_unique_across_the_lab():
    ids = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        ids += [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids))


def test_every_graded_exercise_has_a_solution_and_hidden_checks():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tests = _grade_cells(nb)
        solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
        assert len(solutions) <= len(tests)
        for cell in tests:
            assert "### BEGIN HIDDEN TESTS" in cell.source, f"{path.name}: a graded test cell without hidden tests"
            assert cell.metadata["nbgrader"]["points"] > 0


def test_a_stuck_cell_fails_its_notebook_instead_of_stalling_the_run(tmp_path, monkeypatch):
    from course_utils import notebooks

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("PROFILE = 'quick'", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("import time\ntime.sleep(60)")],
                                  metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
                                            "language_info": {"name": "python"}})
    nbformat.write(nb, tmp_path / "stuck.ipynb")
    monkeypatch.setattr(notebooks, "CELL_TIMEOUT", 3)
    (run,) = run_notebooks([tmp_path / "stuck.ipynb"], out_dir=tmp_path / "out", html=False)
    assert run.status == "failed" and "a cell ran longer than 3 s" in run.error, run.error
    assert "a cell ran longer than 3 s" in run.retried  # run once more (a stuck nbclient), then failed


def test_a_run_of_the_lab_executes_01_after_03_so_that_its_table_has_03s_models():
    from course_utils.notebooks import execution_order

    order = [p.name[:2] for p in execution_order(NOTEBOOKS)]
    assert order.index("01") > order.index("03") and order.index("02") < order.index("03")
    assert [p.name[:2] for p in execution_order([p for p in NOTEBOOKS if p.name[:2] in ("00", "01")])] == ["00", "01"]
