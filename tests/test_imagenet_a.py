"""ImageNet-A: metadata, the data set on the quick-profile fixture, subsets, and bad input."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from course_utils import imagenet_a as ia
from course_utils.imagenet_a import CorruptImageError, ImageNetA, make_imagenet_a_fixture


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    """The default quick-profile fixture (10 classes x 8 images), built once for the module."""
    root = tmp_path_factory.mktemp("fixture")
    make_imagenet_a_fixture(root)
    return root


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy(fixture_root: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(fixture_root, dest)
    return dest


# --------------------------------------------------------------------------- metadata

def test_metadata_maps_the_200_wnids_to_their_1k_indices():
    wnids, indices = ia.imagenet_a_wnids(), ia.imagenet_a_indices()
    assert len(wnids) == len(set(wnids)) == 200 and len(indices) == 200
    assert list(wnids) == sorted(wnids)  # column order of the paper's code (sorted folder names)
    assert all(ia.imagenet_1k_wnids()[i] == w for w, i in zip(wnids, indices))
    # entries of thousand_k_to_200 in hendrycks/natural-adv-examples/eval.py
    assert (indices[0], indices[1], indices[38], indices[199]) == (6, 11, 207, 988)
    assert wnids[0] == "n01498041" and ia.imagenet_a_names()[0] == "stingray"
    assert ia.imagenet_1k_names()[6] == "stingray" and len(ia.imagenet_1k_names()) == 1000


# --------------------------------------------------------------------------- the fixture

def test_fixture_has_the_official_layout_and_is_small(fixture_root):
    folder = fixture_root / "imagenet-a"
    assert (folder / "README.txt").is_file()
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name for p in class_dirs] == sorted(ia.fixture_wnids(10))
    assert set(ia.fixture_wnids(10)) <= set(ia.imagenet_a_wnids())
    assert all(len(list(d.glob("*.jpg"))) == 8 for d in class_dirs)
    assert sum(p.stat().st_size for p in folder.rglob("*")) < 5_000_000


def test_fixture_is_deterministic_in_its_seed(fixture_root, tmp_path):
    again = make_imagenet_a_fixture(tmp_path / "again")
    assert _tree_digest(again) == _tree_digest(fixture_root / "imagenet-a")
    other = make_imagenet_a_fixture(tmp_path / "other", n_classes=2, per_class=2, seed=1)
    same_files = _tree_digest(fixture_root / "imagenet-a").keys() & _tree_digest(other).keys()
    assert same_files and all(_tree_digest(other)[f] != _tree_digest(fixture_root / "imagenet-a")[f]
                              for f in same_files if f.endswith(".jpg"))


def test_fixture_refuses_to_overwrite_a_real_dataset(tmp_path):
    (tmp_path / "imagenet-a" / "n01498041").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a fixture"):
        make_imagenet_a_fixture(tmp_path, n_classes=1, per_class=1)


# --------------------------------------------------------------------------- the data set

def test_items_are_224px_images_in_unit_range_with_1k_labels(fixture_root):
    ds = ImageNetA(fixture_root)
    assert len(ds) == 80 and len(ds.selected_wnids) == 10
    assert ds.wnids == ia.imagenet_a_wnids() and ds.indices_in_1k == ia.imagenet_a_indices()
    image, label = ds[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert ds.samples[0][0].parent.name == "n01498041" and label == 6  # 'stingray' is 1k class 6
    assert ds.class_names[ds.column(label)] == "stingray"
    assert all(t == ds.indices_in_1k[ds.wnids.index(p.parent.name)] for p, t in ds.samples)
    assert ds.load_image(0).size == (224, 224)


def test_default_transform_is_torchvisions_resnet50_preprocessing_without_normalization(fixture_root):
    from torchvision.transforms._presets import ImageClassification

    image = ImageNetA(fixture_root).load_image(0).resize((300, 250))
    official = ImageClassification(crop_size=224, resize_size=256, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.allclose(ia.default_transform()(image), official(image), atol=1e-6)  # same pixels, float rounding


def test_root_may_be_the_parent_or_the_imagenet_a_folder(fixture_root):
    assert ImageNetA(fixture_root).samples == ImageNetA(fixture_root / "imagenet-a").samples


def test_subsets_are_deterministic_in_the_seed(fixture_root):
    a = ImageNetA(fixture_root, classes=3, per_class=2, seed=0)
    assert len(a) == 6 and len(a.selected_wnids) == 3
    assert a.samples == ImageNetA(fixture_root, classes=3, per_class=2, seed=0).samples
    others = [ImageNetA(fixture_root, classes=3, per_class=2, seed=s).samples for s in range(1, 4)]
    assert any(o != a.samples for o in others)
    chosen = ImageNetA(fixture_root, classes=["n01498041"], per_class=20)
    assert chosen.selected_wnids == ("n01498041",) and len(chosen) == 8 and set(chosen.targets) == {6}
    assert ImageNetA(fixture_root, classes="n01498041").samples == chosen.samples


def test_custom_transform_is_applied(fixture_root):
    ds = ImageNetA(fixture_root, classes=["n01498041"], transform=lambda image: image.size)
    assert ds[0] == ((224, 224), 6)


# --------------------------------------------------------------------------- bad input

def test_missing_root_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*course-lab fetch-data"):
        ImageNetA(tmp_path / "nowhere")
    (tmp_path / "unrelated").mkdir()
    with pytest.raises(FileNotFoundError, match="expected"):
        ImageNetA(tmp_path / "unrelated")


def test_empty_class_folder_is_an_error_naming_it(fixture_root, tmp_path):
    root = _copy(fixture_root, tmp_path)
    for f in (root / "imagenet-a" / "n01498041").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"n01498041 has no images"):
        ImageNetA(root)


@pytest.mark.parametrize("name, why", [("cifar10", "not an ImageNet-A wnid"),
                                       ("n01440764", "ImageNet-1k class but not one of ImageNet-A")])
def test_folder_that_is_not_an_imagenet_a_wnid_is_an_error(fixture_root, tmp_path, name, why):
    root = _copy(fixture_root, tmp_path)
    (root / "imagenet-a" / name).mkdir()
    (root / "imagenet-a" / name / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=why):
        ImageNetA(root)


def test_hidden_folders_and_readme_are_ignored(fixture_root, tmp_path):
    root = _copy(fixture_root, tmp_path)
    (root / "imagenet-a" / ".ipynb_checkpoints").mkdir()
    assert len(ImageNetA(root)) == 80


def test_unknown_or_absent_classes_are_errors(fixture_root):
    with pytest.raises(ValueError, match="not ImageNet-A wnids"):
        ImageNetA(fixture_root, classes=["n99999999"])
    absent = next(w for w in ia.imagenet_a_wnids() if w not in ia.fixture_wnids(10))
    with pytest.raises(FileNotFoundError, match=absent):
        ImageNetA(fixture_root, classes=[absent])
    with pytest.raises(ValueError, match="has 10 classes"):
        ImageNetA(fixture_root, classes=11)


def test_truncated_jpeg_raises_naming_the_file_when_read(fixture_root, tmp_path):
    root = _copy(fixture_root, tmp_path)
    ds = ImageNetA(root, classes=["n01498041"])
    bad = ds.samples[1][0]
    bad.write_bytes(bad.read_bytes()[:600])  # lazily verified: building the data set still works
    ds = ImageNetA(root, classes=["n01498041"])
    ds[0]
    with pytest.raises(CorruptImageError, match=rf"(?s){bad.name}.*Fix"):
        ds[1]
    assert ds.check_images() == [bad]


def test_subset_tar_roundtrip_is_reproducible(fixture_root, tmp_path):
    first = ia.make_imagenet_a_subset_tar(fixture_root, tmp_path / "a.tar", classes=2, per_class=3)
    second = ia.make_imagenet_a_subset_tar(fixture_root, tmp_path / "b.tar", classes=2, per_class=3)
    assert first == second == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()
    import tarfile

    with tarfile.open(tmp_path / "a.tar") as tar:
        tar.extractall(tmp_path / "out", filter="data")
    assert len(ImageNetA(tmp_path / "out")) == 6
