"""The label-efficiency plot of notebook 06: a log x axis, one line with error bars per method."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from course_utils.probe import FewLabelResult, LabelCurve  # noqa: E402
from course_utils.viz import plot_label_efficiency  # noqa: E402


def curve(means, spread=0.02):
    return LabelCurve([1, 10, 50], [FewLabelResult([m - spread, m + spread]) for m in means])


def test_one_line_with_error_bars_per_method_on_a_log_axis_with_the_points_as_ticks():
    curves = {"random init": curve([0.1, 0.3, 0.6]), "pretext": curve([0.2, 0.5, 0.7]), "supervised": curve([0.1, 0.6, 0.8])}
    ax = plot_label_efficiency(curves, reference=0.1, reference_label="chance", styles={"pretext": {"color": "red"}})
    try:
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "50"]
        assert len(ax.containers) == 3, "one errorbar container per method"
        lines = {c.get_label(): c.lines[0] for c in ax.containers}  # the data line of each errorbar
        assert lines["pretext"].get_ydata().tolist() == pytest.approx([0.2, 0.5, 0.7])
        assert lines["pretext"].get_color() == "red"
        assert lines["pretext"].get_xdata().tolist() == pytest.approx([1, 10, 50]), "the middle line is not nudged"
        assert lines["random init"].get_xdata()[0] < 1 < lines["supervised"].get_xdata()[0], "the others are, apart"
        assert "chance" in [t.get_text() for t in ax.get_legend().get_texts()]
    finally:
        plt.close(ax.figure)


def test_a_style_can_leave_out_the_line_between_sparse_points():
    ax = plot_label_efficiency({"supervised": curve([0.1, 0.6, 0.8])},
                               styles={"supervised": {"linestyle": "none", "marker": "s"}})
    try:
        line = ax.containers[0].lines[0]
        assert line.get_linestyle() == "None" and line.get_marker() == "s"
    finally:
        plt.close(ax.figure)


def test_draws_on_given_axes_and_returns_them():
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert plot_label_efficiency({"gain": curve([0.05, 0.1, 0.0])}, ax=right, reference=0.0) is right
        assert not left.lines and right.get_ylabel() == "test accuracy"
    finally:
        plt.close(fig)
