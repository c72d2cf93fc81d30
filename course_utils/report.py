"""What `course-lab run` tells its user: a line per notebook on the terminal, and `index.html`.

The terminal gets a line when a notebook starts and one when it finishes (status, seconds and
its headline numbers), a progress bar when it is a terminal, and a summary that fits 100
columns. `index.html`, beside the executed notebooks, holds the whole picture: every recorded
number with its label and the lecture claim it supports, and links to the rendered notebooks.

`STORIES` is the one place that says, per notebook, which lecture claims its numbers support
and which of its numbers are the headline ones.
"""
from __future__ import annotations

import dataclasses
import datetime
import html
import math
import os
import sys
import textwrap
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .notebooks import NotebookRun

WIDTH = 100  # the terminal output fits this many columns
INDENT = " " * 6


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of lecture 11 and the recorded results (by name) that put a number on it."""

    text: str
    results: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Story:
    """What one notebook shows: its claims (the first is the notebook's own) and its headline
    numbers, the two or three the terminal prints."""

    claims: tuple[Claim, ...]
    headline: tuple[str, ...]

    @property
    def claim(self) -> str:
        return self.claims[0].text

    def claim_for(self, result: str) -> str | None:
        """The claim `result` supports, or None for a number that supports none (timings)."""
        return next((c.text for c in self.claims if result in c.results), None)


STORIES: dict[str, Story] = {
    "00_getting_started": Story(
        (Claim("Deep learning performs very well in classification: a small CNN trained for a minute "
               "recognises digits it has never seen.", ("digits_test_accuracy", "digits-m_test_accuracy")),),
        headline=("digits_test_accuracy", "digits-m_test_accuracy")),
    "01_natural_adversarial_examples": Story(
        (Claim("Natural adversarial examples: natural images that people classify easily and a strong "
               "classifier gets wrong; adversarial filtering finds them (ResNet-50: about 3% on ImageNet-A).",
               ("digits_a_pool_size", "digits_a_kept", "digits_a_filter_filtered_accuracy",
                "digits_a_filter_control_accuracy", "imagenet_a_images", "imagenet_a_v1_top1")),
         Claim("The filtered images transfer: models never used for filtering fail on them too.",
               ("digits_a_min_transfer_gap", "digits_a_mlp_gap", "digits_a_logistic_gap", "digits_a_seed_gap_mean",
                "digits_a_seed_gap_sd", "digits_a_two_model_filtered_accuracy",
                "digits_a_one_model_filtered_accuracy", "imagenet_a_v2_top1", "imagenet_a_densenet_top1")),
         Claim("The classifier is wrong with certainty: its confidence does not say when it fails.",
               ("digits_a_calibration_filtered", "digits_a_calibration_control", "digits_a_aurra_filtered",
                "digits_a_aurra_control", "imagenet_a_v1_calibration", "imagenet_a_v2_calibration",
                "imagenet_a_densenet_calibration")),
         Claim("The failures come from the wrong cues (background, size, pose), not from the object's shape.",
               ("digits_a_top_cues", "digits_a_stroke_and_blur_max_ratio"))),
        headline=("digits_a_kept", "digits_a_min_transfer_gap", "digits_a_calibration_filtered")),
    "02_synthetic_adversarial_examples": Story(
        (Claim("A perturbation found by gradient ascent on the loss, too small to change what a person "
               "sees, breaks an accurate classifier; random noise of the same size does not.",
               ("clean_accuracy", "example_adversarial_confidence", "random_sign_accuracy", "fgsm_accuracy",
                "pgd_accuracy", "fgsm_only_fooled_fraction", "grey_pgd_accuracy", "targeted_success_rate")),
         Claim("One reason adversarial examples can always be found: networks are too linear in some "
               "regions of the input space.",
               ("true_logit_linearity_r2", "linear_clean_accuracy", "linear_fgsm_accuracy",
                "linear_worst_case_accuracy", "linear_fgsm_above_worst_case")),
         Claim("Another reason: the high dimensionality of the input, where many tiny changes add up.",
               ("l1_over_l2_growth", "largest_size_random_sign_accuracy", "largest_size_fgsm_accuracy")),
         Claim("Brittleness matters in practice: a pair of glasses or a sticker fools a recogniser.",
               ("eyeglasses_success_rate", "largest_sticker_success_rate"))),
        headline=("clean_accuracy", "fgsm_accuracy", "pgd_accuracy")),
    "03_robustness_and_defences": Story(
        (Claim("The simplest defence is augmentation: training on adversarial examples makes a model "
               "robust to the attack it was trained against, at some cost in clean accuracy.",
               ("standard_clean_accuracy", "standard_fgsm_accuracy", "standard_pgd_accuracy",
                "noise_clean_accuracy", "noise_fgsm_accuracy", "noise_pgd_accuracy",
                "adversarial_clean_accuracy", "adversarial_fgsm_accuracy", "adversarial_pgd_accuracy",
                "clean_accuracy_cost", "standard_transfer_accuracy", "noise_transfer_accuracy",
                "adversarial_transfer_accuracy", "adversarial_transfer_minus_pgd")),
         Claim("Adding adversarial data to the training set is not enough in general: the robustness "
               "covers the threat trained against, not larger, other-norm or natural changes.",
               ("standard_linf_2eps_accuracy", "noise_linf_2eps_accuracy", "adversarial_linf_2eps_accuracy",
                "standard_l2_accuracy", "noise_l2_accuracy", "adversarial_l2_accuracy",
                "linf_perturbation_l2_norm", "standard_rotation_accuracy", "noise_rotation_accuracy",
                "adversarial_rotation_accuracy", "standard_background_accuracy", "noise_background_accuracy",
                "adversarial_background_accuracy", "rotation_gain", "background_gain",
                "standard_sticker_success", "noise_sticker_success", "adversarial_sticker_success",
                "standard_largest_sticker_success", "noise_largest_sticker_success",
                "adversarial_largest_sticker_success", "standard_glasses_success", "noise_glasses_success",
                "adversarial_glasses_success")),
         Claim("Cheap adversarial training can fail outright (catastrophic overfitting): robust to its "
               "own FGSM, not to PGD; PGD training at the same eps and a transfer attack tell why.",
               ("overfit_clean_accuracy", "overfit_fgsm_accuracy", "overfit_pgd_accuracy",
                "overfit_fgsm_minus_clean", "overfit_transfer_accuracy", "overfit_fgsm_minus_transfer",
                "pgd_large_clean_accuracy", "pgd_large_fgsm_accuracy", "pgd_large_pgd_accuracy",
                "pgd_large_transfer_accuracy", "overfit_pgd_by_epoch", "pgd_large_pgd_by_epoch",
                "overfit_fgsm_minus_pgd")),
         Claim("Augmentation can work for specific tasks: how large a perturbation may be before it "
               "changes the class depends on the data.",
               ("other_class_distance_median", "overlap_fraction_eps", "overlap_fraction_eps_large",
                "overlap_fraction_eps_infeasible"))),
        headline=("standard_pgd_accuracy", "adversarial_pgd_accuracy", "clean_accuracy_cost")),
    "04_rotation": Story(
        (Claim("Rotation classification as a pretext task: features learnt by predicting which of four "
               "rotations was applied help a downstream task with few labels.",
               ("random_init_probe_accuracy", "rotation_probe_accuracy", "supervised_few_labels_accuracy",
                "rotation_probe_gain", "rotation_probe_margin", "rotation_seed_probe_gain")),
         Claim("The pretext task is useful in itself, e.g. to tell whether a phone is upside down.",
               ("rotation_pretext_accuracy",))),
        headline=("rotation_pretext_accuracy", "rotation_probe_accuracy", "random_init_probe_accuracy")),
    "05_patch_localization": Story(
        (Claim("Patch localization: predicting where one of the 8 neighbours lies relative to a centre "
               "patch teaches spatial context that a downstream task can use.",
               ("random_init_probe_accuracy", "patch_probe_accuracy", "patch_probe_gain",
                "patch_probe_margin", "patch_seed_probe_gain")),
         Claim("A pretext task must not have a shortcut: the gap and the jitter between the patches are "
               "measured by an ablation, not assumed.",
               ("no_gap_pretext_accuracy", "no_gap_probe_accuracy", "no_gap_probe_change")),
         Claim("The pretext task itself is solvable from image content (chance is 1 in 8).",
               ("patch_pretext_accuracy",))),
        headline=("patch_pretext_accuracy", "patch_probe_accuracy", "random_init_probe_accuracy")),
    "06_simclr": Story(
        (Claim("SimCLR: maximising the agreement of two augmentations of one image gives an encoder "
               "whose features serve a downstream task; the projection head is dropped after training.",
               ("simclr_probe_accuracy", "simclr_projection_probe_accuracy", "random_init_probe_accuracy",
                "supervised_few_labels_accuracy")),
         Claim("Pretext tasks compared fairly: the same compute, three seeds, paired differences; a linear "
               "probe, fine-tuning and training from scratch on the same few labels.",
               ("fair_image_passes", "rotation_probe_accuracy", "patch_probe_accuracy", "rotation_probe_margin",
                "patch_probe_margin", "simclr_probe_margin", "fair_finetune", "fair_finetune_minus_scratch",
                "fair_probe_minus_scratch", "fair_best_probe_task")),
         Claim("SimCLR's augmentations: cropping alone gives poor features, colour distortion matters, and an "
               "augmentation that changes the class (a flip of a digit) is measured, not assumed.",
               ("simclr_no_flip_probe_accuracy", "simclr_crop_only_probe_accuracy", "simclr_colour_effect",
                "simclr_flip_effect")),
         Claim("Self-supervision pays off when labelled data are few.",
               ("label_curve_per_class", "label_curve_supervised_per_class", "label_curve_gain",
                "label_curve_best_encoder", "label_curve_best_gain_fewest", "label_curve_best_gain_fewest_std",
                "label_curve_best_gain_most", "label_curve_best_gain_most_std",
                "label_curve_supervised_overtakes", "label_curve_supervised_minus_best_most")),
         Claim("Augmentations make representations consistent under the transformations they apply "
               "(a flip keeps the class; a 6 rotated by 180 degrees is a 9).",
               ("flip_kept_class", "flip_kept_class_supervised", "flip_kept_class_simclr",
                "rotated_six_called_nine"))),
        headline=("simclr_probe_accuracy", "random_init_probe_accuracy", "supervised_few_labels_accuracy")),
    "07_beyond_classification": Story(
        (Claim("Self-supervision beyond classification: colorization, inpainting, semantic clustering "
               "and video colorization all take their labels from the data.",
               ("colorization_test_mse", "grayscale_test_mse", "inpainting_hole_mse",
                "colorization_probe_accuracy", "inpainting_probe_accuracy", "random_init_probe_accuracy")),
         Claim("Semantic clustering: self-supervised features group images by content.",
               ("colorization_cluster_nmi", "inpainting_cluster_nmi", "random_init_cluster_nmi",
                "patch_cluster_nmi", "patch_random_init_cluster_nmi", "patch_cluster_nmi_margin",
                "pixels_cluster_nmi")),
         Claim("Video colorization: copying colour along a learnt pointer between frames tracks objects.",
               ("video_colocated_mse", "video_pointer_mse", "video_pointer_tracking_accuracy",
                "video_colocated_mask_iou", "video_pointer_mask_iou"))),
        headline=("colorization_test_mse", "grayscale_test_mse", "patch_cluster_nmi")),
}


def story(notebook: str) -> Story | None:
    return STORIES.get(notebook)


def headline(run: NotebookRun, limit: int = 3) -> list[tuple[str, Any]]:
    """The run's headline numbers as (label, value): the story's choice among what the notebook
    recorded, else its first `limit` recorded numbers."""
    chosen = story(run.name)
    names = [n for n in chosen.headline if n in run.results] if chosen else []
    names = names or list(run.results)[:limit]
    return [(run.labels.get(n, n), run.results[n]) for n in names]


def format_value(value: Any) -> str:
    """A recorded value for a reader: floats to 4 significant digits, also inside lists and dicts."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _wrapped(text: str, indent: str = INDENT) -> list[str]:
    return textwrap.wrap(_one_line(text), WIDTH, initial_indent=indent, subsequent_indent=indent) or []


def _numbers_line(pairs: list[tuple[str, Any]]) -> str:
    return " · ".join(f"{_one_line(label)} {format_value(value)}" for label, value in pairs)


def start_line(index: int, total: int, name: str) -> str:
    return f"[{index + 1}/{total}] start   {name}"


def finish_lines(index: int, total: int, run: NotebookRun) -> list[str]:
    """The finish line of a notebook, then its headline numbers, or its error, wrapped."""
    status = "ok" if run.status == "ok" else "FAILED"
    lines = [f"[{index + 1}/{total}] {status:<7} {run.name}  {run.seconds:.1f} s"]
    if run.status != "ok":
        lines += _wrapped(run.error or "failed")
        lines += _wrapped(f"executed notebook: {run.executed}")
        if run.kernel_log:
            lines += _wrapped(f"kernel's stderr: {run.kernel_log}")
    lines += _wrapped(_numbers_line(headline(run)))
    return lines


def summary_lines(runs: list[NotebookRun]) -> list[str]:
    """notebook, status, seconds in columns; each notebook's headline numbers or error wrapped
    below it. Every line fits `WIDTH` columns."""
    width = max([len("notebook")] + [len(r.name) for r in runs])
    lines = [f"{'notebook':<{width}}  status  seconds", "-" * min(WIDTH, width + 17)]
    for r in runs:
        lines.append(f"{r.name:<{width}}  {r.status:<6}  {r.seconds:>7.1f}")
        if r.error:
            lines += _wrapped(r.error, "  ")
        lines += _wrapped(_numbers_line(headline(r)), "  ")
    ok = sum(r.status == "ok" for r in runs)
    lines.append(f"{len(runs)} notebook(s): {ok} ok, {len(runs) - ok} failed, "
                 f"{sum(r.seconds for r in runs):.0f} s in all")
    return lines


class RunProgress:
    """Reports a run of `total` notebooks to `stream` (stdout): plain lines, and an overall
    progress bar (tqdm) when `stream` is a terminal. Its `start` and `finish` are
    `run_notebooks`'s `on_start` and `on_finish`."""

    def __init__(self, total: int, stream: TextIO | None = None, bar: bool | None = None):
        self.total, self.stream = total, stream or sys.stdout
        self.bar = None
        if self.stream.isatty() if bar is None else bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="notebook", file=self.stream, leave=False,
                            ncols=min(WIDTH, os.get_terminal_size(self.stream.fileno()).columns)
                            if self.stream.isatty() else WIDTH,
                            bar_format="{n_fmt}/{total_fmt} notebooks |{bar}| {elapsed} {desc}")
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, daemon=True)  # elapsed time moves during a notebook
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def start(self, index: int, path: os.PathLike | str) -> None:
        name = Path(path).stem
        self.write(start_line(index, self.total, name))
        if self.bar is not None:
            self.bar.set_description_str(name)

    def finish(self, index: int, run: NotebookRun) -> None:
        for line in finish_lines(index, self.total, run):
            self.write(line)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self._stop.set()
            self._ticker.join()
            self.bar.close()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: left; vertical-align: top; }
td.number { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.ok { color: #1a7f37; } .failed { color: #c62828; font-weight: bold; }
.claim { color: #555; font-style: italic; } .none { color: #999; }
pre.error { background: #fdecea; padding: 0.6rem; white-space: pre-wrap; }
code { font-size: 0.9em; }
"""


def _href(run: NotebookRun, out_dir: Path, attr: str, folder: str, suffix: str) -> str | None:
    """A link relative to `out_dir` to the run's file `attr` (html or executed), if it has one."""
    target = getattr(run, attr)
    if not target:
        return None
    try:
        rel = Path(target).resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        rel = f"{folder}/{run.name}{suffix}"
    return urllib.parse.quote(rel)


def render_index(runs: list[NotebookRun], *, profile: str, out_dir: str | os.PathLike = "build",
                 when: datetime.datetime | None = None) -> str:
    """index.html of a run: the summary table, then per notebook every recorded number with its
    label and the claim it supports. Everything that comes from a notebook is escaped."""
    out_dir = Path(out_dir)
    e = html.escape
    when = when or datetime.datetime.now()
    ok = sum(r.status == "ok" for r in runs)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Lab 4 run: {e(profile)} profile</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        "<h1>Lab 4: adversarial examples and self-supervision</h1>",
        f'<p id="run">Profile <strong>{e(profile)}</strong>, {e(when.strftime("%Y-%m-%d %H:%M"))}: '
        f"{len(runs)} notebook(s), {ok} ok, {len(runs) - ok} failed, "
        f"{sum(r.seconds for r in runs):.0f} s in all.</p>",
        *(['<p class="claim">The grade profile trains for a token number of steps: its numbers show that '
            "every cell runs, not that the claims hold. Run the quick or full profile for those.</p>"]
          if profile == "grade" else []),
        '<table id="summary">',
        "<thead><tr><th>notebook</th><th>status</th><th>seconds</th><th>what it shows</th></tr></thead>",
        "<tbody>",
    ]
    for r in runs:
        s = story(r.name)
        link = _href(r, out_dir, "html", "html", ".html")
        name = f'<a href="{e(link)}">{e(r.name)}</a>' if link else e(r.name)
        parts.append(f'<tr><td><a href="#{e(r.name)}">#</a> {name}</td>'
                     f'<td class="{"ok" if r.status == "ok" else "failed"}">{e(r.status)}</td>'
                     f'<td class="number">{r.seconds:.1f}</td>'
                     f'<td class="claim">{e(s.claim) if s else ""}</td></tr>')
    parts += ["</tbody>", "</table>"]
    for r in runs:
        s = story(r.name)
        parts.append(f'<section id="{e(r.name)}">')
        parts.append(f"<h2>{e(r.name)}</h2>")
        links = [f'<a href="{e(h)}">{label}</a>' for h, label in
                 ((_href(r, out_dir, "html", "html", ".html"), "rendered notebook"),
                  (_href(r, out_dir, "executed", "executed", ".ipynb"), "executed .ipynb")) if h]
        if links:
            parts.append(f"<p>{' · '.join(links)}</p>")
        if s:
            parts.append(f'<p class="claim">{e(s.claim)}</p>')
        if r.error:
            parts.append(f'<pre class="error">{e(r.error)}</pre>')
        if r.results:
            parts += ['<table class="results">',
                      "<thead><tr><th>result</th><th>value</th><th>lecture claim it supports</th></tr></thead>",
                      "<tbody>"]
            for name, value in r.results.items():
                label = r.labels.get(name, name)
                claim = s.claim_for(name) if s else None
                parts.append(f"<tr><td>{e(label)}<br><code>{e(name)}</code></td>"
                             f'<td class="number">{e(format_value(value))}</td>'
                             + (f'<td class="claim">{e(claim)}</td>' if claim else '<td class="none">—</td>')
                             + "</tr>")
            parts += ["</tbody>", "</table>"]
        else:
            parts.append('<p class="none">No numbers recorded.</p>')
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_index(runs: list[NotebookRun], out_dir: str | os.PathLike, *, profile: str) -> Path:
    """Write `out_dir/index.html` (see `render_index`) and return its path."""
    path = Path(out_dir) / "index.html"
    path.write_text(render_index(runs, profile=profile, out_dir=out_dir), encoding="utf-8")
    return path
