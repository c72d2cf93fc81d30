"""Shared test setup: every test runs offline-safe, with the profile and data dir under its control."""
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test sees the developer's LAB_PROFILE or LAB_SMOKE, nbgrader's flag, or their data directory."""
    monkeypatch.delenv("LAB_PROFILE", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("LAB_SMOKE", raising=False)
    for name in [n for n in os.environ if n.startswith("COURSE_") and n.endswith(("_URL", "_SHA256"))]:
        monkeypatch.delenv(name)  # the download registry's overrides (course_utils.download.Asset)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path_factory.getbasetemp() / "course_data"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (the browser tests screenshot a failed step)."""
    outcome = yield
    setattr(item, f"rep_{call.when}", outcome.get_result())
