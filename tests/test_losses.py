"""course_utils.losses: NT-Xent against a brute-force reference and its closed forms."""
import math

import pytest
import torch

from course_utils.checks.simclr import reference_nt_xent as nt_xent_reference  # Eq. 1, anchor by anchor
from course_utils.losses import NTXentLoss, nt_xent




@pytest.mark.parametrize("n,d,temperature", [(1, 3, 0.5), (4, 8, 0.5), (7, 5, 0.1), (16, 32, 1.0)])
def test_nt_xent_matches_brute_force_reference(n, d, temperature):
    g = torch.Generator().manual_seed(n * 100 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    expected = nt_xent_reference(z1.numpy(), z2.numpy(), temperature)
    got = nt_xent(z1, z2, temperature)
    assert got.ndim == 0
    assert abs(got.item() - expected) < 1e-5, f"nt_xent gave {got.item():.6f}, the reference {expected:.6f}"


def test_nt_xent_symmetric_and_scale_invariant():
    z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
    torch.testing.assert_close(nt_xent(z1, z2), nt_xent(z2, z1))
    torch.testing.assert_close(nt_xent(3 * z1, 3 * z2), nt_xent(z1, z2))
    row_scales = torch.rand(6, 1) + 0.1
    torch.testing.assert_close(nt_xent(z1 * row_scales, z2), nt_xent(z1, z2))  # normalized per embedding


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_nt_xent_collinear_embeddings_give_log_2n_minus_1(temperature):
    n = 5
    direction = torch.randn(1, 8)
    z1, z2 = direction.repeat(n, 1), 2 * direction.repeat(n, 1)
    # every anchor sees 2N - 1 equal similarities; if the self-similarity were not masked it would be log(2N)
    assert abs(nt_xent(z1, z2, temperature).item() - math.log(2 * n - 1)) < 1e-5


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_aligned_positives_orthogonal_negatives(temperature):
    n = 4
    z = torch.eye(n, 6)
    expected = -1 / temperature + math.log(math.exp(1 / temperature) + 2 * n - 2)
    got = nt_xent(z, z.clone(), temperature).item()
    assert abs(got - expected) < 1e-5
    assert got < math.log(2 * n - 1)
    shuffled = z[[1, 2, 3, 0]]  # views paired with the wrong images
    assert nt_xent(z, shuffled, temperature).item() > got


def test_nt_xent_temperature_effect():
    z = torch.eye(4, 6)
    losses = [nt_xent(z, z.clone(), t).item() for t in (0.1, 0.5, 1.0, 5.0)]
    assert losses == sorted(losses), "with perfect pairs a lower temperature gives a lower loss"
    z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
    assert nt_xent(z1, z2, 0.1).item() != pytest.approx(nt_xent(z1, z2, 1.0).item())


def test_nt_xent_gradients_flow_to_both_views():
    z1 = torch.randn(5, 3, requires_grad=True)
    z2 = torch.randn(5, 3, requires_grad=True)
    nt_xent(z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_nt_xent_half_precision_input_and_bad_input():
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    half = nt_xent(z1.half(), z2.half())
    assert half.dtype == torch.float32
    assert abs(half.item() - nt_xent(z1, z2).item()) < 1e-2
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z1, z2[:3])
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z1, z2, 0.0)


def test_ntxent_loss_splits_concatenated_views():
    z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
    loss = NTXentLoss(0.2)
    torch.testing.assert_close(loss(torch.cat([z1, z2]), None), nt_xent(z1, z2, 0.2))
    with pytest.raises(ValueError, match="odd"):
        loss(torch.randn(5, 8))
