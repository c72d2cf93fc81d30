"""The "would you label it so?" check: clicks become a count, and the static figure draws."""
import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from course_utils.label_check import READABLE, UNREADABLE, LabelCheck


def make_check(n=5):
    images = torch.rand(n, 3, 8, 8)
    return LabelCheck(images, list(range(n)), [(k + 1) % 10 for k in range(n)], [0.9] * n, [str(d) for d in range(10)])


def buttons_of(box):
    import ipywidgets as widgets

    grid = next(c for c in box.children if isinstance(c, widgets.GridBox))
    return [next(w for w in cell.children if isinstance(w, widgets.ToggleButton)) for cell in grid.children]


def test_clicks_are_counted_and_can_be_taken_back():
    check = make_check()
    box = check.widget(ncols=3)
    done, summary = box.children[-1].children
    assert "Nobody has judged the 5 images yet" in summary.value and "rejected" not in summary.value
    buttons = buttons_of(box)
    assert len(buttons) == 5 and all(b.description == READABLE for b in buttons)
    buttons[1].value = True
    buttons[3].value = True
    assert check.rejected == {1, 3} and "rejected 2 of 5 images as unreadable (40%)" in summary.value
    assert buttons[1].description == UNREADABLE
    buttons[1].value = False
    assert check.rejected == {3} and "rejected 1 of 5" in summary.value and buttons[1].description == READABLE


def test_no_count_is_claimed_before_anybody_judged_and_done_says_all_are_readable():
    check = make_check()
    assert "no count" in check.summary()  # papermill and nbgrader: nobody can click
    box = check.widget(ncols=3)
    done, summary = box.children[-1].children
    done.click()
    assert check.judged and "rejected 0 of 5" in summary.value


def test_captions_name_label_and_prediction():
    check = make_check(2)
    assert check._caption(0) == "Class: 0 · model: 1"


def test_figure_titles_each_image_with_class_prediction_and_confidence():
    fig = make_check(3).figure()
    titles = [t.get_text() for ax in fig.axes for t in ax.texts]  # show_images: one text above each image
    assert titles == ["Class: 0\nPred.: 1 (90%)", "Class: 1\nPred.: 2 (90%)", "Class: 2\nPred.: 3 (90%)"]


def test_rejects_mismatched_inputs_and_unknown_images():
    with pytest.raises(ValueError, match="one label"):
        LabelCheck(torch.rand(2, 3, 8, 8), [0], [1, 2], [0.5, 0.5], ["a", "b", "c"])
    with pytest.raises(IndexError):
        make_check(2).set_rejected(5, True)
