"""course_utils.digits_a: the pool is reproducible and rebuildable from its records, each
transformation does what its name says, and filtering, controls, transfer, over-representation
and occlusion maps compute what they claim on constructed cases."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_utils.data import digits_m_backgrounds, load_digits
from course_utils.digits_a import (RANGES, TRANSFORMATIONS, Variant, adversarial_filter, adversarial_filter_all,
                                   apply_transformation, as_predict, confidence_and_correct, control_subset,
                                   digits_a_pool, draw_parameters, make_variant_pool, matched_control,
                                   occlusion_map, overrepresentation, random_variants, transfer_gaps,
                                   transfer_table)

LIMIT = 20  # held-out digits in the small pools of these tests: 2 per class


@pytest.fixture(scope="module")
def pool():
    return digits_a_pool(seed=0, limit=LIMIT)


# --------------------------------------------------------------------------- the pool


def test_pool_holds_every_digit_under_every_transformation_in_unit_range(pool):
    held_out = load_digits("test").subset(LIMIT, seed=0)
    assert pool.images.shape == (LIMIT * len(TRANSFORMATIONS), 3, 32, 32)
    assert pool.images.dtype == torch.float32
    assert float(pool.images.min()) >= 0.0 and float(pool.images.max()) <= 1.0
    assert pool.transformations == [t for t in TRANSFORMATIONS for _ in range(LIMIT)]
    assert torch.equal(pool.labels, held_out.labels.repeat(len(TRANSFORMATIONS)))
    assert torch.equal(pool.labels, held_out.labels[pool.sources])
    assert [v.source for v in pool.variants] == pool.sources.tolist()


def test_pool_is_reproducible_and_the_seed_matters(pool):
    again = digits_a_pool(seed=0, limit=LIMIT)
    assert torch.equal(again.images, pool.images)
    assert again.variants == pool.variants
    other = digits_a_pool(seed=1, limit=LIMIT)
    assert not torch.equal(other.images, pool.images)
    assert other.variants != pool.variants


def test_every_variant_is_rebuilt_from_its_record(pool):
    """The recorded parameters are the whole story: applying them to the source image gives
    the pool's image back."""
    held_out = load_digits("test").subset(LIMIT, seed=0)
    backgrounds = digits_m_backgrounds(LIMIT, "test", 32, seed=0)
    for i, variant in enumerate(pool.variants):
        params = {k: torch.tensor([v]) for k, v in variant.params.items()}
        rebuilt = apply_transformation(variant.transformation, held_out.images[variant.source:variant.source + 1],
                                       params, backgrounds=backgrounds)
        assert torch.allclose(rebuilt[0], pool.images[i], atol=2e-3), f"variant {i}: {variant.describe()}"


def test_recorded_parameters_are_plain_numbers_within_the_documented_ranges(pool):
    for variant in pool.variants:
        assert all(type(v) in (int, float) for v in variant.params.values()), variant
        r = RANGES[variant.transformation]
        p = variant.params
        if variant.transformation == "rotate":
            assert r["degrees"][0] - 1e-3 <= abs(p["degrees"]) <= r["degrees"][1] + 1e-3
        elif variant.transformation == "scale":
            assert r["factor"][0] - 1e-3 <= p["factor"] <= r["factor"][1] + 1e-3
        elif variant.transformation == "shift":
            assert r["dx"][0] - 1e-3 <= abs(p["dx"]) <= r["dx"][1] + 1e-3 and abs(p["dy"]) <= r["dy"][1] + 1e-3
        elif variant.transformation in ("thicken", "thin"):
            assert p["kernel"] % 2 == 1 and r["kernel"][0] <= p["kernel"] <= r["kernel"][1]
        elif variant.transformation == "blur":
            assert r["sigma"][0] - 1e-3 <= p["sigma"] <= r["sigma"][1] + 1e-3
        elif variant.transformation == "contrast":
            assert r["factor"][0] - 1e-3 <= p["factor"] <= r["factor"][1] + 1e-3
        elif variant.transformation == "occlude":
            assert p["vertical"] in (0, 1) and r["width"][0] <= p["width"] <= r["width"][1]
            assert r["offset"][0] <= p["offset"] <= r["offset"][1] and p["value"] == r["value"]
        else:
            assert 0 <= p["background"] < LIMIT


def test_no_variant_is_an_unchanged_copy(pool):
    held_out = load_digits("test").subset(LIMIT, seed=0)
    change = (pool.images - held_out.images[pool.sources]).abs().flatten(1).amax(1)
    assert float(change.min()) > 0.1, [pool.variants[i].describe() for i in (change <= 0.1).nonzero().flatten()]


def test_subset_keeps_images_labels_and_records_together(pool):
    idx = torch.tensor([5, 0, 77])
    sub = pool.subset(idx)
    assert torch.equal(sub.images, pool.images[idx]) and torch.equal(sub.labels, pool.labels[idx])
    assert sub.variants == tuple(pool.variants[i] for i in (5, 0, 77))
    assert len(sub.dataset()) == 3


def test_variant_describe_names_transformation_and_parameters():
    assert Variant(3, "rotate", {"degrees": -23.41}).describe() == "rotate degrees=-23.4"


# --------------------------------------------------------------------------- each transformation


def one(name, images, **params):
    return apply_transformation(name, images, {k: torch.tensor([v] * len(images)) for k, v in params.items()})


def test_rotate_by_90_degrees_is_rot90_counter_clockwise():
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(one("rotate", x, degrees=90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-4)


def test_scale_shrinks_about_the_centre_and_fills_with_black():
    out = one("scale", torch.ones(1, 1, 32, 32), factor=0.5)[0, 0]
    assert torch.allclose(out[9:23, 9:23], torch.ones(14, 14), atol=1e-4)  # the 16 px image, inside its edge
    assert float(out[:6].max()) == 0.0 and float(out[26:].max()) == 0.0
    assert float(out.sum()) == pytest.approx(16 * 16, rel=0.08)


def test_shift_by_whole_pixels_moves_the_image():
    x = torch.rand(1, 1, 16, 16)
    out = one("shift", x, dx=3.0, dy=-2.0)
    assert torch.allclose(out[0, 0, :14, 3:], x[0, 0, 2:, :13], atol=1e-4)  # right by 3, up by 2
    assert float(out[0, 0, :, :3].abs().max()) == 0.0


def test_thicken_and_thin_are_dilation_and_erosion_by_a_3x3_square():
    dot = torch.zeros(1, 3, 9, 9)
    dot[..., 4, 4] = 1.0
    thick = one("thicken", dot, kernel=3)
    assert torch.equal(thick[0, 0] > 0, torch.nn.functional.pad(torch.ones(3, 3), (3, 3, 3, 3)) > 0)
    assert torch.equal(one("thin", thick, kernel=3), dot)  # opening a 3x3 block leaves its centre
    assert float(one("thin", dot, kernel=3).max()) == 0.0  # a line thinner than the window vanishes
    edge = torch.ones(1, 1, 6, 6)
    assert torch.equal(one("thin", edge, kernel=3), edge)  # the frame's border is not a stroke edge


def test_blur_keeps_the_mean_and_lowers_the_peak():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1.0
    out = one("blur", x, sigma=1.5)
    assert float(out.sum()) == pytest.approx(64.0, rel=1e-3)
    assert float(out.max()) < 1.0 and float(out[..., 11, 15]) > 0.0


def test_contrast_blends_towards_the_mean_grey():
    x = load_digits("test").images[:3]
    out = one("contrast", x, factor=0.25)
    mean = x[:, 0].mean((1, 2)).view(-1, 1, 1, 1)
    assert torch.allclose(out, 0.25 * x + 0.75 * mean, atol=1e-4)  # luma weights sum to 0.9999


def test_occlude_paints_exactly_the_bar():
    x = torch.rand(2, 3, 32, 32)
    params = {"vertical": torch.tensor([0, 1]), "width": torch.tensor([3, 4]), "offset": torch.tensor([10, 20]),
              "value": torch.tensor([0.5, 0.5])}
    out = apply_transformation("occlude", x, params)
    bar = torch.zeros(2, 32, 32, dtype=torch.bool)
    bar[0, 10:13, :] = True
    bar[1, :, 20:24] = True
    assert torch.all(out.permute(1, 0, 2, 3)[:, bar] == 0.5)
    assert torch.equal(out.permute(1, 0, 2, 3)[:, ~bar], x.permute(1, 0, 2, 3)[:, ~bar])


def test_background_is_the_mnist_m_blend():
    x = torch.rand(2, 3, 8, 8)
    bg = torch.rand(5, 3, 8, 8)
    out = apply_transformation("background", x, {"background": torch.tensor([4, 1])}, backgrounds=bg)
    assert torch.allclose(out, (bg[[4, 1]] - x).abs())
    with pytest.raises(ValueError, match="backgrounds"):
        apply_transformation("background", x, {"background": torch.tensor([0, 0])})


def test_transformations_leave_their_input_alone_and_reject_unknown_names():
    x = torch.rand(3, 3, 32, 32)
    before = x.clone()
    g = torch.Generator().manual_seed(0)
    for name in TRANSFORMATIONS:
        params = draw_parameters(name, 3, g, n_backgrounds=4)
        apply_transformation(name, x, params, backgrounds=torch.rand(4, 3, 32, 32))
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match="rotate"):
        draw_parameters("swirl", 3, g)
    with pytest.raises(ValueError, match="rotate"):
        apply_transformation("swirl", x, {})


def test_make_variant_pool_counts_and_random_variants_shapes():
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    p = make_variant_pool(x, y, transformations=("blur", "rotate"), per_transformation=2, seed=3)
    assert len(p) == 16 and p.transformations == ["blur"] * 8 + ["rotate"] * 8
    assert p.variants[0].params != p.variants[4].params  # the second draw is a fresh one
    out = random_variants(x, generator=torch.Generator().manual_seed(0))
    again = random_variants(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, again)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


# --------------------------------------------------------------------------- filtering and controls


def lookup_predict(predicted: torch.Tensor, n_classes: int = 10):
    """A fake model: image i (its first pixel holds i) is predicted as predicted[i]; it
    records the batch sizes it was called with."""
    calls = []

    def predict(x):
        calls.append(len(x))
        ids = x[:, 0, 0, 0].round().long()
        return nn.functional.one_hot(predicted[ids], n_classes).float() * 5.0

    predict.calls = calls
    return predict


def indexed_images(n):
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(n).float()
    return x


def test_adversarial_filter_keeps_exactly_the_misclassified_indices_in_batches():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    predicted = torch.tensor([0, 9, 2, 2, 4, 1, 6, 0])
    predict = lookup_predict(predicted)
    images = indexed_images(8)
    before = images.clone()
    kept = adversarial_filter(predict, images, labels, batch_size=3)
    assert kept.dtype == torch.long and kept.tolist() == [1, 3, 5, 7]
    assert predict.calls == [3, 3, 2]
    assert torch.equal(images, before)
    labels_only = adversarial_filter(lambda x: predicted[x[:, 0, 0, 0].long()], images, labels)
    assert labels_only.tolist() == [1, 3, 5, 7]  # a predict that returns labels works too
    assert adversarial_filter(lookup_predict(labels), images, labels).tolist() == []
    with pytest.raises(ValueError, match="one label per image"):
        adversarial_filter(predict, images, labels[:5])


def test_two_model_filter_is_the_intersection():
    labels = torch.zeros(6, dtype=torch.long)
    a = lookup_predict(torch.tensor([1, 1, 0, 1, 0, 2]))
    b = lookup_predict(torch.tensor([1, 0, 0, 3, 5, 2]))
    images = indexed_images(6)
    both = adversarial_filter_all([a, b], images, labels)
    assert both.tolist() == [0, 3, 5]
    assert set(both.tolist()) == set(adversarial_filter(a, images, labels).tolist()) & set(
        adversarial_filter(b, images, labels).tolist())
    with pytest.raises(ValueError, match="empty"):
        adversarial_filter_all([], images, labels)


def test_control_is_a_seeded_uniform_draw_of_the_same_size_from_the_whole_pool():
    control = control_subset(100, 30, seed=4)
    assert len(control) == 30 and len(set(control.tolist())) == 30
    assert control.tolist() == sorted(control.tolist()) and 0 <= int(control.min()) and int(control.max()) < 100
    assert torch.equal(control, control_subset(100, 30, seed=4))
    assert not torch.equal(control, control_subset(100, 30, seed=5))
    # drawn from the whole pool, kept images included (documented): at full size it is the pool
    assert control_subset(10, 10).tolist() == list(range(10))
    counts = torch.zeros(100)
    for seed in range(200):
        counts[control_subset(100, 30, seed=seed)] += 1
    assert float(counts.min()) > 30 and float(counts.max()) < 95  # every index is drawn, about 60 times
    with pytest.raises(ValueError, match="size"):
        control_subset(10, 11)


def test_matched_control_has_the_kept_sets_count_in_every_stratum():
    strata = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    kept = torch.tensor([0, 1, 2, 15, 29])
    control = matched_control(strata, kept, seed=0)
    got = [strata[i] for i in control.tolist()]
    assert sorted(got) == ["a", "a", "a", "b", "c"]
    assert len(set(control.tolist())) == 5
    assert torch.equal(control, matched_control(strata, kept, seed=0))


def test_transfer_table_counts_right_answers_per_subset():
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    m1 = nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 4, 5]), 10).float()  # logits
    m2 = torch.tensor([9, 9, 2, 3, 4, 9])  # predicted labels
    subsets = {"filtered": torch.tensor([2, 3]), "control": torch.tensor([0, 3, 4, 5]), "none": torch.tensor([])}
    table = transfer_table({"m1": m1, "m2": m2}, labels, subsets)
    assert {m: {s: v for s, v in row.items() if s != "none"} for m, row in table.items()} == {
        "m1": {"filtered": 0.0, "control": 0.75}, "m2": {"filtered": 1.0, "control": 0.5}}
    assert math.isnan(table["m1"]["none"])
    with pytest.raises(ValueError, match="whole pool"):
        transfer_table({"m1": m1[:4]}, labels, subsets)


def test_transfer_gaps_rotate_the_filter_role_over_the_models():
    labels = torch.zeros(8, dtype=torch.long)
    outputs = {"a": torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]),  # wrong on 0-3
               "b": torch.tensor([1, 1, 0, 0, 0, 0, 0, 0]),  # wrong on 0-1
               "c": torch.tensor([0, 0, 0, 0, 0, 0, 0, 0])}
    rows = transfer_gaps(outputs, labels, ["a", "b"], seed=0)
    assert [(r.filter, r.model) for r in rows] == [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c")]
    a_b = rows[0]
    control = control_subset(8, 4, seed=0)
    b_control = float((outputs["b"][control] == 0).float().mean())
    assert a_b.kept == 4 and a_b.filtered == 0.5 and a_b.control == b_control
    assert a_b.gap == pytest.approx(b_control - 0.5)
    assert rows[2].filtered == 0.0 and rows[3].filtered == 1.0  # a fails on all of b's kept images, c on none
    matched = transfer_gaps(outputs, labels, ["b"], strata=["x"] * 8)
    assert matched[0].kept == 2
    with pytest.raises(ValueError, match="not one of the models"):
        transfer_gaps(outputs, labels, ["z"])


def test_confidence_and_correct_read_the_softmax_of_the_predicted_class():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    confidence, correct = confidence_and_correct(logits, torch.tensor([0, 1, 0]))
    sigmoid = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731  (softmax of two logits)
    assert torch.allclose(confidence, torch.tensor([sigmoid(2), sigmoid(1), sigmoid(3)]))
    assert correct.tolist() == [True, True, False]


def test_as_predict_returns_cpu_logits_without_grad_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.Dropout(0.5)).train()
    out = as_predict(model)(torch.rand(4, 3, 2, 2))
    assert out.shape == (4, 3) and not out.requires_grad and out.device.type == "cpu"
    assert model.training
    x = torch.rand(4, 3, 2, 2)
    assert torch.equal(as_predict(model)(x), as_predict(model)(x))  # eval mode: dropout off


# --------------------------------------------------------------------------- cues


def test_overrepresentation_ratios_on_a_constructed_pool():
    names = ["a"] * 6 + ["b"] * 3 + ["c"]
    kept = [0, 6, 7, 8, 9]  # a: 1 of 5 kept (pool share 0.6), b: 3 (0.3), c: 1 (0.1)
    rows = overrepresentation(names, kept)
    assert [r.transformation for r in rows] == ["b", "c", "a"]  # b and c tie at 2.0: by name
    by_name = {r.transformation: r for r in rows}
    assert by_name["a"].ratio == pytest.approx((1 / 5) / 0.6)
    assert by_name["b"].ratio == pytest.approx((3 / 5) / 0.3) == pytest.approx(2.0)
    assert by_name["c"].ratio == pytest.approx(2.0)
    assert (by_name["b"].pool, by_name["b"].kept, by_name["b"].pool_share, by_name["b"].kept_share) == (3, 3, 0.3, 0.6)
    never = overrepresentation(names, [6])
    assert {r.transformation: r.ratio for r in never}["a"] == 0.0
    assert all(math.isnan(r.ratio) for r in overrepresentation(names, []))
    with pytest.raises(ValueError, match="repeated"):
        overrepresentation(names, [1, 1])


def test_occlusion_map_highlights_the_region_the_model_depends_on():
    """A fake model whose belief in class 0 rises with the brightness of the top-left 8x8
    corner: hiding that corner costs it, hiding anything else costs nothing."""
    def predict(x):
        corner = x[:, :, :8, :8].mean((1, 2, 3))
        return torch.stack([10 * corner, torch.full_like(corner, 5.0)], 1)

    image = torch.ones(3, 32, 32)
    heat = occlusion_map(predict, image, 0, patch=8, stride=2)
    assert heat.shape == (32, 32)
    peak = divmod(int(heat.argmax()), 32)
    assert peak[0] < 8 and peak[1] < 8
    assert float(heat[:8, :8].min()) > 0.0
    assert float(heat[16:, 16:].abs().max()) == 0.0  # no patch that covers these pixels touches the corner
    label_1 = occlusion_map(predict, image, 1, patch=8, stride=2)
    assert float(label_1[:8, :8].max()) < 0.0  # hiding the corner makes class 1 more likely
    with pytest.raises(ValueError, match="one image"):
        occlusion_map(predict, image[None], 0)
