import pytest
import torch

from course_utils.profiles import PROFILE_NAMES, get_profile
from course_utils.runtime import get_device, seed_everything


def test_parameter_is_used_when_nothing_overrides_it():
    assert get_profile("quick").name == "quick"
    assert get_profile("full").name == "full"


def test_lab_profile_env_beats_everything(monkeypatch):
    monkeypatch.setenv("LAB_PROFILE", "full")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert get_profile("quick").name == "full"


def test_nbgrader_execution_means_grade(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    profile = get_profile("full")
    assert profile.name == "grade"
    assert profile.device == torch.device("cpu")


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="choose 'quick', 'full' or 'grade'"):
        get_profile("fast")


def test_grade_is_the_smallest_and_quick_runs_on_embedded_data():
    quick, grade, full = (get_profile(n) for n in ("quick", "grade", "full"))
    assert quick.dataset == grade.dataset == "digits" and full.dataset == "cifar10"
    assert grade.max_steps is not None and grade.train_limit is not None
    assert grade.epochs <= quick.epochs <= full.epochs


def test_pick_and_banner():
    profile = get_profile("quick")
    assert profile.pick(quick=1, full=2, grade=3) == 1
    with pytest.raises(KeyError, match="quick="):
        profile.pick(full=2)
    assert "quick" in profile.banner() and "quick" in profile._repr_html_()
    assert set(PROFILE_NAMES) == {"quick", "full", "grade"}


def test_device_helper(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("meta") == torch.device("meta")


def test_seeding_reproduces_torch_and_returns_a_generator():
    g = seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(3)))


def test_smoke_keeps_the_full_profiles_choices_and_cuts_its_sizes(monkeypatch):
    monkeypatch.setenv("LAB_SMOKE", "1")
    full, grade = get_profile("full", device="cpu"), get_profile("grade")
    assert full.smoke and full.name == "full" and full.dataset == "cifar10" and full.lr == get_profile("full", smoke=False).lr
    for size in ("train_limit", "test_limit", "epochs", "batch_size", "eval_batch_size", "max_steps"):
        assert getattr(full, size) <= getattr(grade, size), size
    assert (full.epochs, full.max_steps) == (grade.epochs, grade.max_steps) and full.test_limit >= 10  # a few per class
    # integer sizes: the smaller of full's and grade's, never switched off; everything else is full's
    assert full.pick(quick=100, full=2000, grade=2) == 2
    assert full.pick(quick=2, full=1, grade=0) == 1
    assert full.pick(quick=0, full=0, grade=3) == 0
    assert full.pick(quick=True, full=True, grade=False) is True
    assert full.pick(quick=0.1, full=8 / 255, grade=0.1) == 8 / 255
    assert full.pick(quick="small_cnn", full="resnet18", grade="small_cnn") == "resnet18"
    assert full.pick(quick=None, full=1000, grade=None) == 1000 and full.pick(quick=0, full=None, grade=0) is None
    assert full.pick(quick=[1, 2], full=[16, 32, 64], grade=[16]) == [16, 32, 64]
    assert full.pick(quick=64, full=256) == 256  # no grade value: nothing to cut to
    assert "SMOKE" in full.banner() and "LAB_SMOKE=1" in full._repr_html_()
    assert "SMOKE" not in get_profile("full", smoke=False).banner()


def test_smoke_switch_is_explicit_and_nbgrader_ignores_it(monkeypatch):
    for value, expected in [("0", False), ("", False), ("false", False), ("yes", True), ("1", True)]:
        monkeypatch.setenv("LAB_SMOKE", value)
        assert get_profile("full").smoke is expected, value
    monkeypatch.setenv("LAB_SMOKE", "2")
    with pytest.raises(ValueError, match="LAB_SMOKE='2'"):
        get_profile("full")
    monkeypatch.setenv("LAB_SMOKE", "1")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert not get_profile("full").smoke


def test_smoke_checkpoints_never_replace_a_real_runs(monkeypatch):
    from course_utils.checkpoints import checkpoint_path

    real, smoke = get_profile("full", smoke=False), get_profile("full", smoke=True)
    assert checkpoint_path("standard", profile=real).name == "standard-full-seed0.pt"
    assert checkpoint_path("standard", profile=smoke).name == "standard-full-smoke-seed0.pt"


def test_grade_never_looks_up_the_device(monkeypatch):
    """A COURSE_DEVICE the grading machine lacks (set for the student's own runs) cannot break grading."""
    monkeypatch.setenv("COURSE_DEVICE", "cuda:7")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autotest")
    monkeypatch.delenv("LAB_PROFILE", raising=False)
    assert get_profile("quick").device.type == "cpu"
    monkeypatch.delenv("NBGRADER_EXECUTION")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        get_profile("quick")


def test_digits_profile_is_quick_sized_on_full_and_the_profile_itself_elsewhere(monkeypatch):
    from course_utils.profiles import digits_profile

    monkeypatch.delenv("LAB_PROFILE", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    full = get_profile("full", device="cpu", smoke=False)
    digits = digits_profile(full)
    assert (digits.name, digits.dataset, digits.epochs, digits.device) == ("quick", "digits", 10, full.device)
    assert digits == get_profile("quick", device="cpu", smoke=False)  # same checkpoints as a quick run's
    for name in ("quick", "grade"):
        profile = get_profile(name, device="cpu", smoke=False)
        assert digits_profile(profile) is profile
    smoke = digits_profile(get_profile("full", device="cpu", smoke=True))
    assert smoke.smoke and smoke.name == "quick" and smoke.epochs == 1
