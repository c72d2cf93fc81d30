"""The lecture's "try it yourself" for patch localization, as a widget and as static figures.

    quiz = PatchQuiz(photos, patch_size=32, gap=8, jitter=4, questions=6, seed=0)
    display(quiz.widget())   # one question at a time: 8 buttons, then feedback and the answer on the photo;
                             # after the last question, every answer on its photo
    if not interactive_frontend():   # papermill, nbconvert, nbgrader: nobody can click
        quiz.figure(); quiz.answers_figure()   # the questions, then their answers

The answers stay out of sight until the student has answered: the widget draws each one only
after a click, and the static answer figure is drawn only when no person is at the notebook.

Each question is a green-framed centre patch and a red-framed neighbour patch, cut as in
Doersch et al. (2015) with `augment.PatchLocalization` (gap and jitter, no colour dropping:
a person is not fooled by chromatic aberration anyway). The widget is built from plain
ipywidgets, so it can be constructed (and its buttons clicked, e.g. in tests) without a
browser; under papermill it is simply not interactive.
"""
from __future__ import annotations

import io

import torch

from .augment import PatchLocalization
from .viz import imshow_tensor

GREEN, RED = "#1a9850", "#d73027"
POSITION_NAMES = PatchLocalization.LABEL_NAMES
ARROWS = ("↖", "↑", "↗", "←", "→", "↙", "↓", "↘")


def interactive_frontend(parent: dict | None = None) -> bool:
    """True when the running cell was sent by a notebook frontend a person is using.

    JupyterLab and Notebook 7 put the cell's id in the metadata of every execute request
    (`cellId`, for their debugger; tests/test_browser.py checks it); papermill, nbconvert and
    nbgrader execute through nbclient, which sends none, and outside a kernel there is no
    request at all. `parent` is the request (default: the one being executed). A frontend
    that sends no cell id counts as "nobody there" and gets the static answers, as papermill
    does: a student may see them early, the report never misses them.
    """
    if parent is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        kernel = getattr(get_ipython(), "kernel", None)
        if kernel is None or not hasattr(kernel, "get_parent"):
            return False
        parent = kernel.get_parent()
    return bool(((parent or {}).get("metadata") or {}).get("cellId"))


def _framed(ax, patch: torch.Tensor, color: str, title: str | None = None) -> None:
    imshow_tensor(ax, patch)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(4)
    if title:
        ax.set_title(title, fontsize=9)


def draw_patch_boxes(ax, image: torch.Tensor, center_yx, neighbor_yx, patch_size: int) -> None:
    """`image` with a green box on the centre patch and a red one on the neighbour (top-left (row, col))."""
    from matplotlib.patches import Rectangle

    imshow_tensor(ax, image)
    for (r, c), color in ((center_yx, GREEN), (neighbor_yx, RED)):
        ax.add_patch(Rectangle((int(c) - 0.5, int(r) - 0.5), patch_size, patch_size, fill=False, edgecolor=color,
                               linewidth=2.5))
    ax.axis("off")


class PatchQuiz:
    """`questions` centre/neighbour pairs cut from `images` (N, C, H, W), one image per question in turn."""

    def __init__(self, images: torch.Tensor, *, patch_size: int, gap: int, jitter: int = 0, questions: int = 6,
                 seed: int = 0):
        if questions < 1:
            raise ValueError(f"questions must be >= 1, got {questions}")
        g = torch.Generator().manual_seed(seed)
        self.patch_size = patch_size
        self.images = images[torch.arange(questions) % len(images)]
        sampler = PatchLocalization(patch_size, gap, jitter, color=None, generator=g)
        self.sample = sampler.sample(self.images)
        self.current = 0
        self.score = 0
        self.answered: list[bool | None] = [None] * questions
        self.guesses: list[int | None] = [None] * questions  # the first answer to each question

    def __len__(self) -> int:
        return len(self.images)

    @property
    def answers(self) -> list[str]:
        return [POSITION_NAMES[int(k)] for k in self.sample.labels]

    @property
    def finished(self) -> bool:
        """Every question has been answered (at least once)."""
        return all(a is not None for a in self.answered)

    def answer_key(self) -> str:
        """The answers in one line: "Q1 top-left, Q2 right, ..."."""
        return ", ".join(f"Q{i + 1} {answer}" for i, answer in enumerate(self.answers))

    def figure(self, *, ncols: int = 3, reveal: bool = False):
        """All questions: the green centre patch and the red neighbour side by side (answers in the titles
        if `reveal`). Returns the figure."""
        import matplotlib.pyplot as plt

        n = len(self)
        nrows = -(-n // ncols)
        fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(2.2 * ncols * 2 * 0.7, 2.0 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for i in range(n):
            r, c = divmod(i, ncols)
            a_center, a_neighbor = axes[r, 2 * c], axes[r, 2 * c + 1]
            a_center.axis("on")
            a_neighbor.axis("on")
            _framed(a_center, self.sample.center[i], GREEN, f"Q{i + 1}: green")
            _framed(a_neighbor, self.sample.neighbor[i], RED,
                    f"red = {self.answers[i]}" if reveal else "red = ?")
        fig.suptitle("Where is the red patch relative to the green one?")
        fig.tight_layout()
        return fig

    def reveal(self, i: int, ax=None):
        """Question `i` on its image: where the two patches were cut."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(3, 3))
        draw_patch_boxes(ax, self.images[i], self.sample.center_yx[i], self.sample.neighbor_yx[i], self.patch_size)
        ax.set_title(f"Q{i + 1}: the red patch is {self.answers[i]}", fontsize=9)
        return ax.figure

    def answers_figure(self, *, ncols: int = 3):
        """Every question on its photo, where the two patches were cut; once answered, with the
        first answer given ("you: ...", right or not). Returns the figure."""
        import matplotlib.pyplot as plt

        n = len(self)
        nrows = -(-n // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.4 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for i, ax in enumerate(axes.flat[:n]):
            self.reveal(i, ax=ax)
            guess = self.guesses[i]
            if guess is not None:
                mark = "right" if self.answered[i] else f"you: {POSITION_NAMES[guess]}"
                ax.set_title(f"{ax.get_title()}\n({mark})", fontsize=9, color=GREEN if self.answered[i] else RED)
        fig.suptitle("The answers: where the green and the red patch were cut")
        fig.tight_layout()
        return fig

    def check(self, position: int) -> bool:
        """Record the answer `position` (0..7, row-major) to the current question; True if right.
        Only the first answer to a question counts for the score."""
        right = int(self.sample.labels[self.current]) == int(position)
        if self.answered[self.current] is None:
            self.answered[self.current] = right
            self.guesses[self.current] = int(position)
            self.score += int(right)
        return right

    def _png(self, fig) -> bytes:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight", dpi=120)
        plt.close(fig)
        return buffer.getvalue()

    def _question_png(self, i: int) -> bytes:
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(3.6, 1.9))
        _framed(a, self.sample.center[i], GREEN, "green (centre)")
        _framed(b, self.sample.neighbor[i], RED, "red (neighbour)")
        return self._png(fig)

    def widget(self):
        """One question at a time: a 3x3 pad of buttons around the green patch, feedback, and Next.

        Nothing in it shows an answer before the student has given one: a click reveals that
        question's answer on its photo, and answering the last unanswered question reveals
        every answer (`answers_figure`) below the pad."""
        import ipywidgets as w

        # align_self: a VBox stretches its children to its width, which would blow the PNGs up
        picture = w.Image(value=self._question_png(0), format="png", layout=w.Layout(align_self="flex-start"))
        answer = w.Image(format="png", layout=w.Layout(display="none", align_self="flex-start"))
        summary = w.Image(format="png", layout=w.Layout(display="none", align_self="flex-start"))
        feedback = w.HTML(f"Question 1 of {len(self)}: where is the red patch relative to the green one?")
        buttons = []
        for position, arrow in enumerate(ARROWS):
            button = w.Button(description=f"{arrow} {POSITION_NAMES[position]}", layout=w.Layout(width="120px"))
            button.position = position
            buttons.append(button)
        middle = w.Button(description="green", disabled=True, layout=w.Layout(width="120px"),
                          style={"button_color": GREEN})
        pad = w.GridBox(buttons[:4] + [middle] + buttons[4:],
                        layout=w.Layout(grid_template_columns="repeat(3, 125px)"))
        next_button = w.Button(description="Next question", disabled=len(self) == 1)

        def on_answer(button):
            right = self.check(button.position)
            truth = self.answers[self.current]
            text = (f"<b style='color:{GREEN}'>Right!</b> It is {truth}." if right else
                    f"<b style='color:{RED}'>Not quite:</b> it is {truth}, not {POSITION_NAMES[button.position]}.")
            text += f" Score: {self.score} of {sum(a is not None for a in self.answered)}."
            answer.value = self._png(self.reveal(self.current))
            answer.layout.display = None
            if self.finished:
                text += " All questions answered: every answer is drawn at the bottom."
                if summary.layout.display == "none":  # drawn once: only first answers appear in it
                    summary.value = self._png(self.answers_figure())
                    summary.layout.display = None
            # one assignment, after the pictures: the frontend never shows half a verdict
            feedback.value = text

        def on_next(_):
            self.current = (self.current + 1) % len(self)
            picture.value = self._question_png(self.current)
            answer.layout.display = "none"
            feedback.value = f"Question {self.current + 1} of {len(self)}: where is the red patch?"

        for button in buttons:
            button.on_click(on_answer)
        next_button.on_click(on_next)
        box = w.VBox([picture, feedback, pad, next_button, answer, summary])
        box.quiz_buttons, box.quiz_feedback, box.quiz_next = buttons, feedback, next_button  # for tests
        box.quiz_answer, box.quiz_summary = answer, summary
        return box
