"""Device choice and what each device gets, with the backends mocked: CUDA, then MPS, then the CPU."""
import os
import subprocess
import sys
import warnings

import pytest
import torch

import course_utils
from course_utils import runtime
from course_utils.data import load_digits, make_loader
from course_utils.models import SmallCNN
from course_utils.profiles import get_profile
from course_utils.runtime import (MPS_FALLBACK_ENV, get_device, seed_everything, use_amp, use_non_blocking,
                                  use_pinned_memory)
from course_utils.train import fit, to_device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def backends(monkeypatch):
    """Set which accelerators PyTorch reports: backends(cuda=True, mps=True, cuda_count=1)."""
    def set_backends(*, cuda: bool, mps: bool, cuda_count: int = 1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count if cuda else 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(course_utils, "_mps_fallback_at_torch_load", "1")  # as when course_utils loads first
    return set_backends


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                 (False, True, "mps"), (False, False, "cpu")])
def test_cuda_then_mps_then_cpu(backends, cuda, mps, expected):
    backends(cuda=cuda, mps=mps)
    assert get_device() == torch.device(expected)


def test_course_device_and_prefer_override_the_choice(backends, monkeypatch):
    backends(cuda=True, mps=True)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    assert get_device() == torch.device("mps")
    monkeypatch.setenv("COURSE_DEVICE", " cuda:0 ")
    assert get_device() == torch.device("cuda:0")
    assert get_device("cpu") == torch.device("cpu")  # an explicit argument beats the environment


@pytest.mark.parametrize("name, cuda, mps, message", [
    ("gpu", True, True, r"COURSE_DEVICE='gpu' is not a device: use 'cpu', 'cuda', 'cuda:1' or 'mps'"),
    ("cuda", False, True, r"COURSE_DEVICE='cuda' asks for CUDA, but PyTorch sees no CUDA GPU here"),
    ("cuda:1", True, False, r"COURSE_DEVICE='cuda:1': this machine has 1 CUDA GPU\(s\), numbered from 0"),
    ("mps", True, False, r"COURSE_DEVICE='mps' asks for Apple's MPS, which this machine or PyTorch build lacks"),
])
def test_an_override_this_machine_cannot_honour_is_a_clear_error(backends, monkeypatch, name, cuda, mps, message):
    backends(cuda=cuda, mps=mps)
    monkeypatch.setenv("COURSE_DEVICE", name)
    with pytest.raises(ValueError, match=message):
        get_device()
    with pytest.raises(ValueError, match=r"get_device\(prefer=...\)="):
        get_device(name)


def test_choosing_mps_turns_on_the_cpu_fallback_for_later_processes(backends, monkeypatch):
    backends(cuda=False, mps=True)
    monkeypatch.delenv(MPS_FALLBACK_ENV, raising=False)
    assert get_device() == torch.device("mps")
    assert os.environ[MPS_FALLBACK_ENV] == "1"
    monkeypatch.setenv(MPS_FALLBACK_ENV, "0")  # a user's explicit choice is kept
    get_device()
    assert os.environ[MPS_FALLBACK_ENV] == "0"


def test_mps_warns_once_when_torch_loaded_without_the_fallback(backends, monkeypatch):
    backends(cuda=False, mps=True)
    monkeypatch.setattr(course_utils, "_mps_fallback_at_torch_load", None)
    monkeypatch.setattr(runtime, "_warned_no_fallback", False)
    with pytest.warns(RuntimeWarning, match="course-lab lab.*COURSE_DEVICE=cpu"):
        assert get_device() == torch.device("mps")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_device()  # once is enough


def test_no_fallback_warning_when_torch_loaded_with_it_or_off_mps(backends, monkeypatch):
    monkeypatch.setattr(runtime, "_warned_no_fallback", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backends(cuda=False, mps=True)
        get_device()  # the fixture says torch loaded with the variable set
        monkeypatch.setattr(course_utils, "_mps_fallback_at_torch_load", None)
        backends(cuda=True, mps=True)
        get_device()
        backends(cuda=False, mps=False)
        get_device()


def _fresh_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != MPS_FALLBACK_ENV}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def test_importing_course_utils_first_sets_the_fallback_before_torch_loads():
    seen = _fresh_python(f"import os, sys, course_utils; print('torch' in sys.modules, "
                         f"course_utils._mps_fallback_at_torch_load, os.environ['{MPS_FALLBACK_ENV}'])")
    assert seen == ["False", "1", "1"]  # importing the package loads no torch: the variable is in time
    # torch first: torch saw no variable, which is what the warning on MPS is about; children still get it
    seen = _fresh_python(f"import torch, os, course_utils; "
                         f"print(course_utils._mps_fallback_at_torch_load, os.environ['{MPS_FALLBACK_ENV}'])")
    assert seen == ["None", "1"]


@pytest.mark.parametrize("device, amp, pinned, non_blocking", [
    ("cuda", True, True, True), ("cuda:0", True, True, True), ("mps", False, False, False), ("cpu", False, False, False)])
def test_mixed_precision_pinned_memory_and_async_copies_on_cuda_only(backends, device, amp, pinned, non_blocking):
    backends(cuda=True, mps=True)
    assert (use_amp(device), use_pinned_memory(device), use_non_blocking(device)) == (amp, pinned, non_blocking)
    assert use_amp(torch.device(device)) == amp


def test_no_pinned_memory_for_cuda_batches_on_a_machine_without_cuda(backends):
    backends(cuda=False, mps=False)
    assert not use_pinned_memory("cuda")


@pytest.fixture(scope="module")
def tiny():
    return load_digits("train").subset(64)


@pytest.mark.parametrize("cuda, mps, device, pinned", [
    (True, True, "cuda", True), (True, True, "mps", False), (True, True, "cpu", False),
    (True, True, None, True), (False, True, None, False), (False, False, None, False)])
def test_make_loader_pins_memory_only_for_cuda(backends, tiny, cuda, mps, device, pinned):
    backends(cuda=cuda, mps=mps)
    assert make_loader(tiny, 16, device=device).pin_memory is pinned


def test_to_device_copies_asynchronously_only_to_cuda(monkeypatch):
    seen = []
    real_to = torch.Tensor.to

    def recording_to(self, device, *args, non_blocking=False, **kwargs):
        seen.append((str(device), non_blocking))
        return real_to(self, "cpu")  # this machine has neither CUDA nor MPS

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    x = torch.zeros(2)
    for name in ("cuda", "mps", "cpu"):
        to_device((x, [x]), torch.device(name))
    assert seen == [("cuda", True)] * 2 + [("mps", False)] * 2 + [("cpu", False)] * 2


class _Recorder:
    def __init__(self):
        self.autocast, self.scalers = [], 0


@pytest.fixture
def amp_calls(monkeypatch):
    calls = _Recorder()
    real_autocast, real_scaler = torch.autocast, torch.amp.GradScaler

    def autocast(device_type, *args, **kwargs):
        calls.autocast.append((device_type, kwargs.get("dtype")))
        return real_autocast(device_type, *args, **kwargs)

    def scaler(*args, **kwargs):
        calls.scalers += 1
        return real_scaler(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)
    monkeypatch.setattr(torch.amp, "GradScaler", scaler)
    return calls


def test_fit_trains_in_float32_without_autocast_or_scaler_off_cuda(tiny, amp_calls):
    # older PyTorch rejects torch.autocast("mps") even when disabled, so off CUDA it is not entered at all
    fit(SmallCNN(), make_loader(tiny, 32), epochs=1, max_steps=2, device="cpu", progress=False)
    assert amp_calls.autocast == [] and amp_calls.scalers == 0


def test_fit_with_amp_autocasts_to_float16_with_a_gradient_scaler(tiny, amp_calls):
    # the CUDA path, exercised on the CPU (which supports float16 autocast and a scaler too)
    history = fit(SmallCNN(), make_loader(tiny, 32), epochs=1, max_steps=2, device="cpu", amp=True, progress=False)
    assert amp_calls.autocast == [("cpu", torch.float16)] * 2 and amp_calls.scalers == 1
    assert len(history.step_loss) == 2 and all(torch.isfinite(torch.tensor(history.step_loss)))


def test_seed_everything_seeds_every_available_device(backends, monkeypatch):
    backends(cuda=True, mps=True)
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: seeded.append(("cuda", s)))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda s: seeded.append(("mps", s)))
    seed_everything(7)
    assert ("cuda", 7) in seeded and ("mps", 7) in seeded


def test_grade_profile_stays_on_the_cpu_whatever_the_machine_has(backends, monkeypatch):
    backends(cuda=True, mps=True)
    assert get_profile("quick").device == torch.device("cuda")
    assert get_profile("grade").device == torch.device("cpu")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    assert get_profile("full").device == torch.device("cpu")
