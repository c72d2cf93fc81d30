import urllib.error

import pytest
import torch

from course_utils import data
from course_utils.data import ImageTensorDataset, digits_m_backgrounds, load_dataset, load_digits, make_loader


def test_digits_shapes_range_and_split():
    train, test = load_digits("train"), load_digits("test")
    assert train.images.shape == (1437, 3, 32, 32) and test.images.shape == (360, 3, 32, 32)
    assert train.images.dtype == torch.float32
    assert 0 <= float(train.images.min()) and float(train.images.max()) <= 1
    # three equal channels, and stratified: every class has 35-37 test images
    assert torch.equal(train.images[:, 0], train.images[:, 2])
    assert torch.bincount(test.labels).tolist() == pytest.approx([36] * 10, abs=1)
    assert train.classes == tuple("0123456789")


def test_digits_split_is_deterministic_and_disjoint():
    a, b = load_digits("test"), load_digits("test")
    assert torch.equal(a.images, b.images)
    train = load_digits("train", size=8)
    test = load_digits("test", size=8)
    rows = {tuple(x.flatten().tolist()) for x in train.images}
    overlap = sum(tuple(x.flatten().tolist()) in rows for x in test.images)
    assert overlap < 5  # the bundled data has a few duplicate images, no more


def test_digits_other_size():
    assert load_digits("test", size=16).images.shape == (360, 3, 16, 16)


def test_digits_m_is_the_mnist_m_blend():
    plain = load_digits("train")
    blended = load_digits("train", background="photos", seed=0)
    bg = digits_m_backgrounds(len(plain), "train", 32, seed=0)
    assert torch.allclose(blended.images, (bg - plain.images).abs())
    assert torch.equal(blended.labels, plain.labels)
    assert 0 <= float(blended.images.min()) and float(blended.images.max()) <= 1
    # colour backgrounds: the channels differ
    assert (blended.images[:, 0] - blended.images[:, 1]).abs().mean() > 0.02


def test_digits_m_is_deterministic_per_seed_and_split():
    a = load_digits("test", background="photos", seed=1).images
    assert torch.equal(a, load_digits("test", background="photos", seed=1).images)
    assert not torch.equal(a, load_digits("test", background="photos", seed=2).images)


def test_digits_m_train_and_test_backgrounds_come_from_different_regions():
    train_bg = digits_m_backgrounds(300, "train", 32)
    test_bg = digits_m_backgrounds(300, "test", 32)
    # no test background equals any train background
    d = torch.cdist(test_bg.flatten(1), train_bg.flatten(1))
    assert float(d.min()) > 1.0
    # and the crops vary: not one texture for all
    assert train_bg.flatten(1).std(0).mean() > 0.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
    with pytest.raises(ValueError, match="background"):
        load_digits("train", background="noise")
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("mnist", "train")


def test_subset_is_stratified_and_deterministic():
    ds = load_digits("train")
    few = ds.subset(per_class=3, seed=1)
    assert torch.bincount(few.labels).tolist() == [3] * 10
    assert torch.equal(few.images, ds.subset(per_class=3, seed=1).images)
    assert not torch.equal(few.images, ds.subset(per_class=3, seed=2).images)
    some = ds.subset(25)
    assert len(some) == 25 and torch.bincount(some.labels, minlength=10).min() >= 2
    assert ds.subset() is ds


def test_loader_serves_whole_batches_and_shuffles_reproducibly():
    ds = load_digits("test")
    loader = make_loader(ds, 64, shuffle=True, seed=5)
    x, y = next(iter(loader))
    assert x.shape == (64, 3, 32, 32) and y.shape == (64,)
    x2, _ = next(iter(make_loader(ds, 64, shuffle=True, seed=5)))
    assert torch.equal(x, x2)
    assert sum(len(b[1]) for b in make_loader(ds, 100)) == len(ds)
    assert loader.num_workers == 0


def test_image_dataset_validates_shapes():
    with pytest.raises(ValueError, match="expected images"):
        ImageTensorDataset(torch.zeros(3, 32, 32), torch.zeros(3), ("a",))


def test_cifar10_offline_error_says_what_to_fetch_and_where(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(RuntimeError) as err:
        data.load_cifar10("train", root=tmp_path / "cifar")
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar") in message
    assert "course-lab fetch-data" in message


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert str(data.data_dir()).endswith("course_utils")


def test_digits_m_backgrounds_larger_than_the_photos_allow_are_refused_with_the_limit():
    assert digits_m_backgrounds(3, "test", size=33).shape == (3, 3, 33, 33)
    with pytest.raises(ValueError, match=r"size must be in 1\.\.33"):
        digits_m_backgrounds(3, "test", size=40)


def test_cifar10_hand_extracted_copy_is_read_and_a_damaged_one_is_named(tmp_path):
    import io
    import os
    import pickle
    import sys
    import tarfile

    sys.path.insert(0, os.path.dirname(__file__))
    from standins import cifar10_archive

    archive, content = cifar10_archive(train_per_batch=10, test=20)
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(tmp_path, filter="data")  # by hand: no completion marker
    test = data.load_cifar10("test", root=tmp_path)
    assert torch.equal(test.labels, torch.from_numpy(content["test"][1]).long()) and test.images.shape == (20, 3, 32, 32)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])  # an interrupted copy
    with pytest.raises(RuntimeError, match="data_batch_3 is not a readable CIFAR-10 batch.*fetch-data cifar10"):
        data.load_cifar10("train", root=tmp_path)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    batch.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(RuntimeError, match="unexpected object"):  # the loader builds arrays, never calls code
        data.load_cifar10("train", root=tmp_path)
