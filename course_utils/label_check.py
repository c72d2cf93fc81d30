""""Would you label it so?": the human check of adversarial filtering, as a widget and a figure.

ImageNet-A's authors kept a filtered photo only if people could tell its class (Hendrycks et
al. 2021, step 4 of the collection). `LabelCheck` asks the student the same about the images
their filter kept: each image with its label, and a button to reject the ones they cannot read
themselves; the count is the share of the filtered set that is not a fair test.

    check = LabelCheck(images, labels, predictions, confidences, classes)
    display(check.widget())          # JupyterLab: click "can't read it" under an image
    if not interactive_frontend():   # papermill, nbgrader: nobody can click
        check.figure()               # the same images, as "Class / Prediction (confidence)"

Built from plain ipywidgets, so it can be constructed and clicked in tests without a browser.
"""
from __future__ import annotations

import io
from typing import Sequence

import torch

READABLE, UNREADABLE = "can't read it", "rejected: unreadable"


def _png(image: torch.Tensor, scale: int = 3) -> bytes:
    """A (C, H, W) image in [0, 1] as PNG bytes, `scale` times larger (nearest neighbour)."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class LabelCheck:
    """The student's verdict on each filtered image: readable (the default) or not."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], predictions: Sequence[int],
                 confidences: Sequence[float], classes: Sequence[str]):
        if not len(images) == len(labels) == len(predictions) == len(confidences):
            raise ValueError("one label, prediction and confidence per image")
        self.images = images.detach().cpu()
        self.labels = [int(v) for v in labels]
        self.predictions = [int(v) for v in predictions]
        self.confidences = [float(v) for v in confidences]
        self.classes = list(classes)
        self.rejected: set[int] = set()
        self.judged = False  # a click, or "done": until then no count means anything
        self._summary = None

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> str:
        n, k = len(self), len(self.rejected)
        if not self.judged:
            return (f"Nobody has judged the {n} images yet, so there is no count: in JupyterLab, click "
                    "'can't read it' under each image you cannot read (or 'done' if you read them all), then run this "
                    "cell again.")
        return (f"You rejected {k} of {n} images as unreadable ({k / max(n, 1):.0%}); the other {n - k} you "
                "judged readable: for you they are fair test images, and the model got them wrong.")

    def set_rejected(self, i: int, rejected: bool) -> None:
        """Record the student's verdict on image i (rejected: they cannot read it)."""
        if not 0 <= i < len(self):
            raise IndexError(f"no image {i}: there are {len(self)}")
        (self.rejected.add if rejected else self.rejected.discard)(i)
        self.judged = True
        if self._summary is not None:
            self._summary.value = self.summary()

    def mark_judged(self) -> None:
        """The student has looked at every image (those not rejected they can read)."""
        self.judged = True
        if self._summary is not None:
            self._summary.value = self.summary()

    def _caption(self, i: int) -> str:
        return f"Class: {self.classes[self.labels[i]]} · model: {self.classes[self.predictions[i]]}"

    def widget(self, *, ncols: int = 8):
        import ipywidgets as widgets

        self._summary = widgets.HTML(self.summary())
        cells = []
        for i in range(len(self)):
            button = widgets.ToggleButton(value=False, description=READABLE, tooltip=self._caption(i),
                                          layout=widgets.Layout(width="120px"))

            def on_change(change, i=i, button=button):
                self.set_rejected(i, change["new"])
                button.description = UNREADABLE if change["new"] else READABLE
                button.button_style = "danger" if change["new"] else ""

            button.observe(on_change, names="value")
            picture = widgets.Image(value=_png(self.images[i]), format="png",
                                    layout=widgets.Layout(width="96px", height="96px"))
            cells.append(widgets.VBox([picture, widgets.HTML(f"<small>{self._caption(i)}</small>"), button],
                                      layout=widgets.Layout(align_items="center")))
        grid = widgets.GridBox(cells, layout=widgets.Layout(grid_template_columns=f"repeat({ncols}, 128px)"))
        intro = widgets.HTML("<b>Would you label it so?</b> Reject every image whose class <i>you</i> cannot "
                             "read; the count updates below.")
        done = widgets.Button(description="done", tooltip="I have looked at every image")
        done.on_click(lambda _: self.mark_judged())
        return widgets.VBox([intro, grid, widgets.HBox([done, self._summary])])

    def figure(self, *, ncols: int = 8):
        """The images as a static grid, each titled "Class / Prediction (confidence)"."""
        from .viz import show_images

        titles = [f"Class: {self.classes[y]}\nPred.: {self.classes[p]} ({c:.0%})"
                  for y, p, c in zip(self.labels, self.predictions, self.confidences)]
        return show_images(self.images, titles, ncols=min(ncols, len(self)), scale=1.5,
                           suptitle="the filtered images: would you label them as their class?")
