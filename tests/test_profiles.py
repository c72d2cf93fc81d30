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
