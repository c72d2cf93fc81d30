"""What docs/reproducibility.md promises about the quick profile on the CPU.

Invariant: the same seed and the same thread count give bit-identical training, whatever
else the machine is doing; the forward pass does not depend on the thread count at all.
(The weights after training do depend on it: the doc says by how much.)
"""
import pytest
import torch

from course_utils.data import load_digits, make_loader
from course_utils.models import build_model
from course_utils.profiles import get_profile
from course_utils.runtime import seed_everything
from course_utils.train import fit


@pytest.fixture(scope="module")
def digits():
    return load_digits("train").subset(256, seed=0), load_digits("test").images[:512]


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _train_as_notebook_00(train_set, steps):
    """A few steps of notebook 00's quick-profile training (same model, loader, optimizer and schedule)."""
    profile = get_profile("quick", device="cpu")
    seed_everything(0)
    model = build_model("small_cnn", num_classes=10)
    loader = make_loader(train_set, profile.batch_size, shuffle=True, device="cpu", seed=0)
    history = fit(model, loader, epochs=profile.epochs, lr=profile.lr, max_steps=steps, device="cpu", progress=False)
    return model.state_dict(), history.step_loss


def test_same_seed_and_thread_count_give_bit_identical_weights(digits):
    train_set, _ = digits
    (w1, loss1), (w2, loss2) = (_train_as_notebook_00(train_set, steps=6) for _ in range(2))
    assert loss1 == loss2
    assert w1.keys() == w2.keys()
    for name in w1:
        assert torch.equal(w1[name], w2[name]), f"{name} differs between two identical runs"
    assert loss1[-1] < loss1[0]  # it did train: the weights moved


def test_forward_pass_does_not_depend_on_the_thread_count(digits, threads):
    _, test_images = digits
    seed_everything(0)
    model = build_model("small_cnn", num_classes=10).eval()
    logits = []
    for n in (1, 2):
        threads(n)
        with torch.no_grad():
            logits.append(model(test_images))
    assert torch.equal(logits[0], logits[1])
