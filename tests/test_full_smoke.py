"""The full profile, proven without a GPU.

Every solution notebook runs on the `full` profile's code paths (LAB_PROFILE=full) with the
smoke switch (LAB_SMOKE=1, sizes cut to the grade profile's), on the CPU, with stand-ins
in the real formats served from a loopback HTTP server through the real downloader:
CIFAR-10 as `cifar-10-python.tar.gz`, ImageNet-A as a tar of its layout, ResNet-50's
weights as a randomly initialised state dict under torchvision's file name. The URLs and
SHA-256s come from the registry's environment overrides (COURSE_<ASSET>_URL / _SHA256),
as a mirror's would. A full-profile cell that would crash after 40 minutes on a GPU
crashes here in seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import torch
from standins import cifar10_archive, imagenet_a_archive, loopback_server, resnet50_weights, sha256, torchvision_weights

from course_utils import download as dl
from course_utils.notebooks import find_notebooks, run_notebooks

pytestmark = [pytest.mark.notebook, pytest.mark.full_smoke]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = find_notebooks(ROOT / "solutions" / "lab4")
IMAGENET_A = dict(n_classes=3, per_class=3)  # 9 photos: ResNet-50 batches of 4 (the smoke BATCH), one partial


@pytest.fixture(scope="session")
def standins(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    """Asset name -> (the path it is served at, its bytes); built once per session."""
    folder = tmp_path_factory.mktemp("standins")
    cifar10, _ = cifar10_archive(train_per_batch=40, test=100)
    return {
        "cifar10": ("/mirror/cifar-10-python.tar.gz", cifar10),
        "resnet50-imagenet1k-v1": ("/mirror/resnet50-0676ba61.pth", resnet50_weights()),
        "resnet50-imagenet1k-v2": ("/mirror/resnet50-11ad3fa6.pth", resnet50_weights(seed=1)),
        "densenet121-imagenet1k-v1": ("/mirror/densenet121-a639ec97.pth", torchvision_weights("densenet121")),
        "imagenet-a": ("/mirror/imagenet-a.tar", imagenet_a_archive(folder, **IMAGENET_A)),
    }


@pytest.fixture(scope="session")
def full_smoke(standins, tmp_path_factory):
    """Run every notebook once on full + smoke; returns (runs by name, served requests, data dir, out dir)."""
    work = tmp_path_factory.mktemp("full_smoke")
    data = work / "data"
    with loopback_server() as server, pytest.MonkeyPatch.context() as env:
        for name, (path, payload) in standins.items():
            server.files[path] = payload
            asset = dl.ASSETS[name]
            env.setenv(asset.url_env, server.url + path)
            env.setenv(asset.sha256_env, sha256(payload))
        env.delenv(dl.SUBSET_URL_ENV, raising=False)  # ImageNet-A from its official name, here the mirror
        env.delenv("NBGRADER_EXECUTION", raising=False)
        env.setenv("LAB_PROFILE", "full")
        env.setenv("LAB_SMOKE", "1")
        env.setenv("COURSE_DEVICE", "cpu")
        env.setenv("COURSE_DATA_DIR", str(data))  # downloads and checkpoints
        env.setenv("TORCH_HOME", str(work / "torch-home"))  # no weights from a real hub cache
        runs = run_notebooks(NOTEBOOKS, profile="full", out_dir=work / "out", html=False, cell_timeout=600)
        requests = list(server.requests)
    return {r.name: r for r in runs}, requests, data, work / "out"


@pytest.mark.parametrize("notebook", [p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_full_profile_code_paths(full_smoke, notebook):
    runs, _, _, out = full_smoke
    run = runs[notebook]
    assert run.status == "ok", f"{notebook} failed on the full profile (smoke): {run.error}; see {run.executed}"
    nb = nbformat.read(out / "executed" / f"{notebook}.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert "SMOKE RUN" in text and "Profile 'full'" in text, "the profile banner should say it is a full smoke run"


def test_each_asset_came_once_through_the_downloader(full_smoke, standins):
    _, requests, data, _ = full_smoke
    served = sorted(path for path, _ in requests)
    assert served == sorted(path for path, _ in standins.values()), "each asset downloaded exactly once"
    assert dl.is_complete(data / "cifar10") and (data / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    assert dl.is_complete(data / "imagenet-a")
    weights = data / "weights" / "resnet50-0676ba61.pth"
    assert weights.read_bytes() == standins["resnet50-imagenet1k-v1"][1]
    assert any((data / "checkpoints").glob("*-full-smoke-seed0.pt")), "checkpoints go to the test's data dir"


def test_full_branches_ran(full_smoke):
    runs, _, data, out = full_smoke

    def outputs(name):
        nb = nbformat.read(out / "executed" / f"{name}.ipynb", as_version=4)
        return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])

    assert "cifar10: 40 training and 20 test images" in outputs("00_getting_started")  # CIFAR-10, cut for smoke
    natural = outputs("01_natural_adversarial_examples")
    # ImageNet-A through the downloader, the filter model and two models never used for filtering, and Digits-A
    assert "ResNet-50 V1 (the filter), ResNet-50 V2, DenseNet-121" in natural and "random weights" not in natural
    results = runs["01_natural_adversarial_examples"].results
    assert results["imagenet_a_images"] == IMAGENET_A["n_classes"] * IMAGENET_A["per_class"]
    assert {"imagenet_a_v1_top1", "imagenet_a_v2_top1", "imagenet_a_densenet_top1", "digits_a_kept"} <= set(results)
    for name in ("standard", "noise", "adversarial-fgsm-rs"):  # trained by notebooks 02 and 03
        saved = torch.load(data / "checkpoints" / f"{name}-full-smoke-seed0.pt", map_location="cpu", weights_only=True)
        assert (saved["config"]["model"], saved["config"]["dataset"]) == ("resnet18", "cifar10"), name
    for name in ("04_rotation", "05_patch_localization", "06_simclr"):
        assert "encoder='resnet18'" in outputs(name), name  # print(recipe): the full profile's encoder
