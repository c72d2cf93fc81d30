"""The "too linear" and "high dimension" measurements against brute force and closed forms."""
import itertools

import pytest
import torch
from torch import nn

from course_utils.linearity import linear_worst_case_accuracy, logits_along, random_sign_noise, straight_line_r2


def test_straight_line_r2_is_one_on_lines_and_low_on_parabolas():
    t = torch.linspace(-1, 1, 21)
    curves = torch.stack([3 * t + 1, t ** 2, torch.zeros_like(t)], dim=1)
    r2 = straight_line_r2(t, curves)
    assert torch.allclose(r2[0], torch.tensor(1.0)) and r2[1] < 0.01 and r2[2] == 1


def test_logits_along_a_linear_model_are_straight_lines():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x, d = torch.rand(3, 3, 2, 2), torch.randn(3, 3, 2, 2).sign()
    t = torch.linspace(-0.5, 0.5, 11)
    logits = logits_along(model, x, d, t)
    assert logits.shape == (11, 3, 4)
    assert torch.allclose(logits[5], model(x), atol=1e-6)
    assert (straight_line_r2(t, logits) > 1 - 1e-6).all()


@pytest.mark.parametrize("box", [False, True])
def test_linear_worst_case_matches_brute_force_over_the_corners(box):
    """With 4 pixels the worst case is at a corner of the (clipped) ball: try all 16."""
    torch.manual_seed(1)
    linear = nn.Linear(4, 3)
    x = torch.rand(40, 4)
    x[:10, 0] = 0.0
    y = torch.randint(0, 3, (40,))
    eps = 0.3
    survives = torch.ones(40, dtype=torch.bool)
    for signs in itertools.product((-1.0, 1.0), repeat=4):
        x_adv = x + eps * torch.tensor(signs)
        if box:
            x_adv = x_adv.clamp(0, 1)
        with torch.no_grad():
            survives &= linear(x_adv).argmax(1) == y
    assert linear_worst_case_accuracy(linear, x, y, eps, box=box) == pytest.approx(survives.float().mean().item())


def test_linear_worst_case_at_zero_eps_is_the_clean_accuracy():
    torch.manual_seed(2)
    linear = nn.Linear(6, 4)
    x, y = torch.rand(50, 6), torch.randint(0, 4, (50,))
    with torch.no_grad():
        clean = (linear(x).argmax(1) == y).float().mean().item()
    assert linear_worst_case_accuracy(linear, x, y, 0.0) == pytest.approx(clean)


def test_random_sign_noise_moves_every_free_pixel_by_eps_and_is_reproducible():
    x = torch.full((2, 3, 4, 4), 0.5)
    out = random_sign_noise(None, x, None, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose((out - x).abs(), torch.full_like(x, 0.1))
    again = random_sign_noise(None, x, None, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and 0.3 < (out > x).float().mean() < 0.7
    assert random_sign_noise(None, torch.zeros(1, 1, 2, 2), None, 0.2).min() == 0
