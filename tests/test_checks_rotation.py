"""Notebook 04's hidden checks accept the solution and reject the usual mistakes."""
import pytest
import torch

from course_utils.augment import rotate_batch as library_rotate_batch
from course_utils.checks.rotation import check_rotate_batch


def solution(x):
    x_rot = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4).repeat_interleave(len(x))
    return x_rot, labels


def interleaved(x):
    x_rot = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], 1).flatten(0, 1)
    labels = torch.arange(4).repeat(len(x))
    return x_rot, labels


def one_random_rotation(x):
    k = torch.randint(0, 4, (len(x),))
    return torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)]), k


def rotates_in_place(x):
    outs = []
    for k in range(4):
        outs.append(x.clone())
        x.copy_(torch.rot90(x, 1, dims=(2, 3)))  # x ends where it started only after 4 steps
    x.mul_(1.0001)
    return torch.cat(outs), torch.arange(4).repeat_interleave(len(x))


WRONG = {
    "labels interleaved, images in blocks": lambda x: (solution(x)[0], torch.arange(4).repeat(len(x))),
    "images interleaved, labels in blocks": lambda x: (interleaved(x)[0], torch.arange(4).repeat_interleave(len(x))),
    "clockwise": lambda x: (torch.cat([torch.rot90(x, k, dims=(3, 2)) for k in range(4)]),
                            torch.arange(4).repeat_interleave(len(x))),
    "transpose instead of 90 degrees": lambda x: (
        torch.cat([x, x.transpose(2, 3), x.flip(2, 3), x.transpose(2, 3).flip(2, 3)]),
        torch.arange(4).repeat_interleave(len(x))),
    "flip instead of 180 degrees": lambda x: (
        torch.cat([x, torch.rot90(x, 1, (2, 3)), x.flip(2), torch.rot90(x, 3, (2, 3))]),
        torch.arange(4).repeat_interleave(len(x))),
    "rotates the channel axis": lambda x: (torch.cat([torch.rot90(x, k, dims=(1, 2)) for k in range(4)]),
                                           torch.arange(4).repeat_interleave(len(x))),
    "one random rotation per image": one_random_rotation,
    "same rotation four times": lambda x: (torch.cat([x] * 4), torch.arange(4).repeat_interleave(len(x))),
    "float labels": lambda x: (solution(x)[0], solution(x)[1].float()),
    "labels as a list": lambda x: (solution(x)[0], solution(x)[1].tolist()),
    "modifies the input": rotates_in_place,
    # tampers with the fixture: makes x a constant image, whose rotations all look alike
    "tamper: blanks the input": lambda x: (x.fill_(0.5), solution(x))[1],
    "calls the library": library_rotate_batch,
}


def test_solution_passes():
    check_rotate_batch(solution)


def test_interleaved_order_with_aligned_labels_passes():
    check_rotate_batch(interleaved)


@pytest.mark.parametrize("mistake", WRONG)
def test_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_rotate_batch(WRONG[mistake])


def test_messages_name_the_mistake():
    with pytest.raises(AssertionError, match="not aligned"):
        check_rotate_batch(WRONG["labels interleaved, images in blocks"])
    with pytest.raises(AssertionError, match="swapped"):
        check_rotate_batch(WRONG["clockwise"])
    with pytest.raises(AssertionError, match="not an exact rotation"):
        check_rotate_batch(WRONG["transpose instead of 90 degrees"])
    with pytest.raises(AssertionError, match="in place"):
        check_rotate_batch(rotates_in_place)
    with pytest.raises(AssertionError, match="library"):
        check_rotate_batch(library_rotate_batch)
