"""Pretext tasks and contrastive views, built batch-wise on the tensor's device.

Every function here takes a batch of images (N, C, H, W) in [0, 1] and draws its random
parameters *per sample* (a different crop, label or jitter for every image) with tensor
operations, never a Python loop over the images, so augmentation runs on the GPU next to
the model. torchvision's v2 transforms draw one set of parameters per call, which gives a
whole batch the same crop: fine for preprocessing, wrong for contrastive views.

- `rotate_batch`: the four rotations of every image and their labels (RotNet: Gidaris,
  Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image
  Rotations", ICLR 2018).
- `PatchLocalization`: a centre patch, one of its 8 neighbours and the neighbour's
  position (Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by
  Context Prediction", ICCV 2015).
- `SimCLRViews`: two independently augmented views of every image (Chen, Kornblith,
  Norouzi & Hinton, "A Simple Framework for Contrastive Learning of Visual
  Representations", ICML 2020), and `gallery_transforms` for the lecture's six panels.

Each task also has a `fit`-compatible batch transform, `(x, y) -> (inputs, targets)`:

    fit(RotationClassifier(enc, d), loader, epochs=e, batch_transform=rotation_batch_transform)
    fit(PatchSiamese(enc, d), loader, epochs=e, batch_transform=PatchLocalization(8, 2, 1).batch_transform)
    fit(SimCLRModel(enc, d), loader, epochs=e, batch_transform=SimCLRViews.for_small_images(32).batch_transform,
        loss_fn=NTXentLoss(0.5))

The class labels `y` of the data set are ignored: that is what makes the task self-supervised.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale uses them.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


def _check_images(x: torch.Tensor, name: str = "images") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a batch (N, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point in [0, 1], got {x.dtype}: use x.float() / 255")


def _rand(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn from `generator` (on its device) or the global RNG, on `device`."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randn(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _randint(low: int, high: int, shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Integers in [low, high) per element."""
    if generator is None:
        return torch.randint(low, high, shape, device=device)
    return torch.randint(low, high, shape, generator=generator, device=generator.device).to(device)


def _uniform(low, high, shape, generator, device) -> torch.Tensor:
    return low + (high - low) * _rand(shape, generator, device)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images, repeated on 3 channels (as torchvision's `rgb_to_grayscale(x, 3)`).

    One-channel images are returned as they are.
    """
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"expected RGB or gray images, got {x.shape[1]} channels")
    w = x.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x)


# --------------------------------------------------------------------------- rotation


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image, and their labels (RotNet, Gidaris et al. 2018).

    Returns `x_rot` (4N, C, H, W) in blocks `[all k=0 | all k=1 | all k=2 | all k=3]`:
    `x_rot[k * N + i] == torch.rot90(x[i], k, dims=(1, 2))`, a rotation by k * 90 degrees
    (exact: rot90 moves pixels, it does not interpolate), and `labels[k * N + i] == k`.
    Gidaris et al. found that feeding all four rotations of an image in the same batch
    trains better than one random rotation per image. `x` is not modified; the result keeps
    its device and dtype. The images must be square, so that all rotations have one shape.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"rotate_batch expects a batch (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate_batch needs square images (rot90 of an HxW image is WxH), got {tuple(x.shape[-2:])}")
    n = len(x)
    x_rot = x.new_empty((4 * n, *x.shape[1:]))
    for k in range(4):  # copying into slices is ~3x faster than torch.cat of the (transposed) rot90 views
        x_rot[k * n:(k + 1) * n] = torch.rot90(x, k, dims=(2, 3))
    labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return x_rot, labels


def rotation_batch_transform(x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit`'s batch transform for the rotation pretext task: `(x, y) -> rotate_batch(x)`.

    The batch grows fourfold; `y` (the class labels) is ignored.
    """
    return rotate_batch(x)


# --------------------------------------------------------------------------- patches


@dataclasses.dataclass
class PatchSample:
    """What `PatchLocalization.sample` drew: the patches, labels, and where the patches are.

    `center_yx` and `neighbor_yx` (N, 2) are the (row, col) of each patch's top-left pixel.
    """

    center: torch.Tensor
    neighbor: torch.Tensor
    labels: torch.Tensor
    center_yx: torch.Tensor
    neighbor_yx: torch.Tensor


def _gather_patches(images: torch.Tensor, yx: torch.Tensor, size: int) -> torch.Tensor:
    """The `size` x `size` patch of image n whose top-left pixel is `yx[n]`, for every n, in one gather."""
    offsets = torch.arange(size, device=images.device)
    rows = (yx[:, 0:1] + offsets)[:, :, None]  # (N, size, 1)
    cols = (yx[:, 1:2] + offsets)[:, None, :]  # (N, 1, size)
    n = torch.arange(len(images), device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[n, rows, cols].permute(0, 3, 1, 2).contiguous()  # (N, C, size, size)


class PatchLocalization:
    """Context prediction (Doersch et al. 2015): where is this patch relative to that one?

    For every image a 3x3 grid of `patch_size` patches, `gap` pixels apart, is laid at a
    random position; the centre patch and one of its 8 neighbours, chosen at random per
    image, are cut out, and the label says which neighbour it is, row-major:

        0 1 2        0 top-left     1 top      2 top-right
        3 . 4        3 left                    4 right
        5 6 7        5 bottom-left  6 bottom   7 bottom-right

    Doersch et al. saw the network cheat through low-level cues, and so:
    - the `gap` between patches stops it from continuing lines and textures across the
      border (they used 96-pixel patches 48 pixels apart);
    - every patch is shifted by its own random `jitter` in [-jitter, jitter] pixels on each
      axis (they used up to 7 pixels), so the exact alignment gives nothing away;
    - `color="drop"` keeps one random colour channel of each patch and replaces the other
      two by Gaussian noise (the kept channel's mean, `drop_noise` times its standard
      deviation), because chromatic aberration (colour fringes that grow towards the image
      border) tells where a patch lies in the image. `color="gray"` projects the patches to
      grayscale instead; `None` leaves them as they are.

    The defaults (8-pixel patches, gap 2, jitter 1: a 30-pixel grid) fit 32x32 images.
    The grid plus its jitter margins, `3 * patch_size + 2 * gap + 2 * jitter` pixels, must
    fit in the image. Everything is drawn per image with tensor operations; a `generator`
    (on any device) makes the draws reproducible.
    """

    # (row, col) offset of each neighbour from the centre, in grid cells, by label.
    NEIGHBOR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
    LABEL_NAMES = ("top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right")
    COLOR_MODES = ("drop", "gray", None)

    def __init__(self, patch_size: int = 8, gap: int = 2, jitter: int = 1, *, color: str | None = "drop",
                 drop_noise: float = 0.01, generator: torch.Generator | None = None):
        for name, value, least in (("patch_size", patch_size, 1), ("gap", gap, 0), ("jitter", jitter, 0)):
            if int(value) != value or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if color not in self.COLOR_MODES:
            raise ValueError(f"color must be one of {self.COLOR_MODES}, got {color!r}")
        self.patch_size, self.gap, self.jitter = int(patch_size), int(gap), int(jitter)
        self.color, self.drop_noise, self.generator = color, drop_noise, generator

    @property
    def extent(self) -> int:
        """Pixels the grid needs on each side: three patches, two gaps and the jitter margins."""
        return 3 * self.patch_size + 2 * self.gap + 2 * self.jitter

    def __repr__(self) -> str:
        return (f"PatchLocalization(patch_size={self.patch_size}, gap={self.gap}, jitter={self.jitter}, "
                f"color={self.color!r})")

    def sample(self, images: torch.Tensor, labels: torch.Tensor | int | None = None) -> PatchSample:
        """Draw a centre patch, a neighbour and its label for every image, and say where they are.

        `labels` fixes the neighbour (one int for all images, or one per image) instead of
        drawing it at random, e.g. to show every neighbour of one image.
        """
        _check_images(images)
        n, _, h, w = images.shape
        if h < self.extent or w < self.extent:
            raise ValueError(
                f"images of {h}x{w} pixels are too small for {self!r}: the 3x3 grid with its jitter margins "
                f"needs 3*{self.patch_size} + 2*{self.gap} + 2*{self.jitter} = {self.extent} pixels on each side; "
                f"use smaller patch_size/gap/jitter or larger images")
        device, g = images.device, self.generator
        if labels is None:
            labels = _randint(0, 8, (n,), g, device)
        else:
            labels = torch.as_tensor(labels, device=device).long().expand(n).clone()
            if labels.min() < 0 or labels.max() > 7:
                raise ValueError("labels must be in 0..7")
        # top-left corner of the un-jittered grid, inside the jitter margin
        origin = torch.stack([_randint(0, h - self.extent + 1, (n,), g, device),
                              _randint(0, w - self.extent + 1, (n,), g, device)], 1) + self.jitter
        jitter = _randint(-self.jitter, self.jitter + 1, (2, n, 2), g, device)  # (patch, image, row/col)
        stride = self.patch_size + self.gap
        offsets = torch.tensor(self.NEIGHBOR_OFFSETS, device=device)[labels]  # (N, 2) in grid cells
        center_yx = origin + stride + jitter[0]
        neighbor_yx = origin + stride + offsets * stride + jitter[1]
        center = self._recolor(_gather_patches(images, center_yx, self.patch_size))
        neighbor = self._recolor(_gather_patches(images, neighbor_yx, self.patch_size))
        return PatchSample(center, neighbor, labels, center_yx, neighbor_yx)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(center, neighbor, labels): two (N, C, patch_size, patch_size) batches and N labels in 0..7."""
        s = self.sample(images)
        return s.center, s.neighbor, s.labels

    def batch_transform(self, x: torch.Tensor, y=None) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """`fit`'s batch transform: `(x, y) -> ((center, neighbor), labels)`; `y` is ignored."""
        center, neighbor, labels = self(x)
        return (center, neighbor), labels

    def _recolor(self, patches: torch.Tensor) -> torch.Tensor:
        if self.color is None or patches.shape[1] == 1:
            return patches
        if self.color == "gray":
            return to_grayscale(patches).contiguous()
        n, c = patches.shape[:2]
        keep = _randint(0, c, (n,), self.generator, patches.device)
        kept = patches[torch.arange(n, device=patches.device), keep][:, None]  # (N, 1, p, p)
        mean = kept.mean((2, 3), keepdim=True)
        std = kept.std((2, 3), correction=0, keepdim=True)
        noise = mean + self.drop_noise * std * _randn(patches.shape, self.generator, patches.device)
        is_kept = (torch.arange(c, device=patches.device) == keep[:, None])[:, :, None, None]
        return torch.where(is_kept, patches, noise.to(patches.dtype))


# --------------------------------------------------------------------------- SimCLR views


def _crop_boxes(n: int, h: int, w: int, scale, ratio, generator, device, attempts: int = 10) -> torch.Tensor:
    """Random-resized-crop boxes (x0, y0, width, height) in pixels, per image, as torchvision draws them.

    Area fraction uniform in `scale`, aspect ratio log-uniform in `ratio`; of `attempts`
    candidates the first that fits is kept, else the whole image. Boxes are continuous
    (no rounding to whole pixels): the crop is resampled anyway.
    """
    area = _uniform(scale[0], scale[1], (n, attempts), generator, device) * (h * w)
    log_ratio = _uniform(math.log(ratio[0]), math.log(ratio[1]), (n, attempts), generator, device)
    aspect = log_ratio.exp()
    bw, bh = (area * aspect).sqrt(), (area / aspect).sqrt()
    fits = (bw <= w) & (bh <= h)
    first = fits.float().argmax(1, keepdim=True)  # first fitting attempt (0 when none fits)
    any_fits = fits.any(1)
    bw = torch.where(any_fits, bw.gather(1, first)[:, 0], torch.full_like(bw[:, 0], w))
    bh = torch.where(any_fits, bh.gather(1, first)[:, 0], torch.full_like(bh[:, 0], h))
    x0 = _rand(n, generator, device) * (w - bw)
    y0 = _rand(n, generator, device) * (h - bh)
    return torch.stack([x0, y0, bw, bh], 1)


def _adjust_brightness(x, f):
    return (x * f).clamp(0, 1)


def _adjust_contrast(x, f):
    mean = to_grayscale(x)[:, :1].mean((1, 2, 3), keepdim=True)
    return (f * x + (1 - f) * mean).clamp(0, 1)


def _adjust_saturation(x, f):
    return (f * x + (1 - f) * to_grayscale(x)).clamp(0, 1)


def _adjust_hue(x, shift):
    """Rotate the hue by `shift` (fraction of the colour circle), keeping value and saturation.

    Same result as torchvision's `adjust_hue` (RGB -> HSV, shift H, HSV -> RGB), written
    with the closed-form HSV -> RGB, f(n) = V - C * clamp(min(k, 4 - k), 0, 1) with
    k = (n + 6H) mod 6, n = 5, 3, 1 for R, G, B, so that it is a few elementwise ops.
    """
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    chroma = maxc - minc
    c = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    hue = torch.where(maxc == r, (g - b) / c,
                      torch.where(maxc == g, 2 + (b - r) / c, 4 + (r - g) / c))  # in [-1, 5)
    hue = (hue + 6 * shift.view(-1, 1, 1)).remainder(6)[:, None]
    k = (x.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + hue).remainder(6)
    return maxc[:, None] - chroma[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


_COLOR_OPS = (_adjust_brightness, _adjust_contrast, _adjust_saturation, _adjust_hue)


def color_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 hue: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision's ColorJitter with given per-image factors: (N,) tensors, 1 (or 0 hue) = no change.

    Brightness scales, contrast blends with the image's mean gray level, saturation with its
    grayscale, hue rotates in HSV; each step clamps to [0, 1]. `order` (N, 4), a permutation
    of 0..3 (brightness, contrast, saturation, hue) per image, sets the order of the steps,
    which torchvision draws at random for every image; an entry -1 skips that step for that
    image. Default: brightness, contrast, saturation, hue for all.
    """
    factors = (brightness, contrast, saturation, hue)
    if order is None:
        out = x
        for op, f in zip(_COLOR_OPS, factors):
            out = op(out, f.view(-1, 1, 1, 1) if op is not _adjust_hue else f)
        return out
    out = x.clone()
    for step in range(4):  # each image passes every op once; a step groups the images by which op is next
        for k, op in enumerate(_COLOR_OPS):
            idx = (order[:, step] == k).nonzero()[:, 0]
            if len(idx):
                f = factors[k][idx]
                out[idx] = op(out[idx], f.view(-1, 1, 1, 1) if op is not _adjust_hue else f)
    return out


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur image n with a Gaussian of standard deviation `sigma[n]`: one separable depthwise conv."""
    n, c, h, w = x.shape
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2
    kernel = torch.exp(-0.5 * (t / sigma.view(-1, 1).to(x.dtype)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, k)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    return y.view(n, c, h, w)


class SimCLRViews:
    """Two independently augmented views of every image, for contrastive learning (SimCLR).

    One view is (Chen et al. 2020, Appendix A; each step with its own random parameters
    for every image):

    1. random resized crop: an area fraction uniform in `crop_scale` of the image, aspect
       ratio log-uniform in `crop_ratio`, resized to `size` x `size`;
    2. horizontal flip with probability `flip_p`;
    3. with probability `rotate_p`, rotation by 90, 180 or 270 degrees (a SimCLR ablation and
       a panel of the lecture's gallery; off by default);
    4. colour jitter with probability `jitter_p`: brightness, contrast, saturation and hue
       factors up to `jitter`, applied in a random order per image, as torchvision's
       `ColorJitter`;
    5. grayscale with probability `grayscale_p`;
    6. Gaussian blur with probability `blur_p`, sigma uniform in `blur_sigma`, a kernel of
       about 10% of the image side;
    7. with probability `noise_p`, additive Gaussian noise of standard deviation `noise_std`
       (the lecture's "noise" panel; off by default).

    The defaults are the paper's ImageNet setting: crop scale (0.08, 1), colour jitter of
    strength s = 1, i.e. (0.8s, 0.8s, 0.8s, 0.2s) = (0.8, 0.8, 0.8, 0.2) with p = 0.8,
    grayscale p = 0.2, blur p = 0.5. For 32x32 images use `SimCLRViews.for_small_images`.

    Crop, flip and rotation are one affine resampling (`F.affine_grid` + `F.grid_sample`,
    bilinear), and the colour steps are batched tensor arithmetic. This is several times
    faster than `kornia.augmentation`'s generic pipeline of the same steps on the CPU
    (kornia's hue step alone costs more than all of this; see benchmarks/bench_augment.py)
    and gives the same distribution of views. Bilinear resampling does not antialias, so
    feed images not much larger than `size` (the usual case: the crop is then upsampled).

    `views(x)` returns (view1, view2); `view(x)` one view; `batch_transform` is `fit`'s.
    """

    def __init__(self, size: int | tuple[int, int], *, crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter: Sequence[float] = (0.8, 0.8, 0.8, 0.2), jitter_p: float = 0.8, grayscale_p: float = 0.2,
                 blur_p: float = 0.5, blur_sigma: Sequence[float] = (0.1, 2.0), blur_kernel: int | None = None,
                 rotate_p: float = 0.0, noise_p: float = 0.0, noise_std: float = 0.1,
                 generator: torch.Generator | None = None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if not (0 < crop_scale[0] <= crop_scale[1] <= 1):
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        if not (0 < crop_ratio[0] <= crop_ratio[1]):
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {crop_ratio}")
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue) >= 0 with hue <= 0.5, got {jitter}")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("grayscale_p", grayscale_p),
                        ("blur_p", blur_p), ("rotate_p", rotate_p), ("noise_p", noise_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if rotate_p > 0 and self.size[0] != self.size[1]:
            raise ValueError(f"rotation needs a square output size, got {self.size}")
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.flip_p, self.rotate_p = flip_p, rotate_p
        self.jitter, self.jitter_p, self.grayscale_p = tuple(jitter), jitter_p, grayscale_p
        self.blur_p, self.blur_sigma = blur_p, tuple(blur_sigma)
        # SimCLR: kernel 10% of the image side (23 px for 224); odd, so it has a centre
        self.blur_kernel = blur_kernel or 2 * int(0.05 * min(self.size)) + 1
        self.noise_p, self.noise_std = noise_p, noise_std
        self.generator = generator

    @classmethod
    def for_small_images(cls, size: int = 32, **overrides) -> "SimCLRViews":
        """The setting for 32x32 images (CIFAR-10, Digits-M).

        SimCLR's CIFAR-10 setting (Chen et al. 2020, Appendix B.9) drops the blur and uses
        colour-jitter strength s = 0.5, i.e. (0.4, 0.4, 0.4, 0.1) with p = 0.8, and grayscale
        p = 0.2. A prototype of this lab on 32px Digits-M found that a milder crop,
        scale (0.5, 1), works better than (0.08, 1) on images this small: a crop of 8% of a
        32px digit is a few pixels of background.
        """
        kwargs = dict(crop_scale=(0.5, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, grayscale_p=0.2, blur_p=0.0)
        kwargs.update(overrides)
        return cls(size, **kwargs)

    def __repr__(self) -> str:
        fields = ("size", "crop_scale", "crop_ratio", "flip_p", "rotate_p", "jitter", "jitter_p", "grayscale_p",
                  "blur_p", "blur_sigma", "noise_p", "noise_std")
        return "SimCLRViews(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(view1, view2), each (N, C, *size) in [0, 1], drawn independently."""
        return self.view(x), self.view(x)

    def batch_transform(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, None]:
        """`fit`'s batch transform: `(x, y) -> (torch.cat([view1, view2]), None)`.

        The model embeds all 2N views in one pass; `losses.NTXentLoss` splits the 2N
        projections back into the two views (rows i and i + N are a positive pair).
        """
        v1, v2 = self(x)
        return torch.cat([v1, v2]), None

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """One augmented view of every image."""
        _check_images(x)
        n, device, g = len(x), x.device, self.generator
        out = self._crop_flip_rotate(x)
        if self.jitter_p > 0 and any(self.jitter):
            out = self._jitter(out)
        if self.grayscale_p > 0 and out.shape[1] == 3:
            gray = _rand(n, g, device) < self.grayscale_p
            out = torch.where(gray.view(-1, 1, 1, 1), to_grayscale(out), out)
        if self.blur_p > 0:
            blur = _rand(n, g, device) < self.blur_p
            sigma = _uniform(self.blur_sigma[0], self.blur_sigma[1], n, g, device)
            out = torch.where(blur.view(-1, 1, 1, 1), _gaussian_blur(out, sigma, self.blur_kernel), out)
        if self.noise_p > 0:
            noisy = (_rand(n, g, device) < self.noise_p).view(-1, 1, 1, 1)
            out = torch.where(noisy, (out + self.noise_std * _randn(out.shape, g, device)).clamp(0, 1), out)
        return out

    def _crop_flip_rotate(self, x: torch.Tensor) -> torch.Tensor:
        """Crop, flip and rotate every image in one affine resampling to the output size.

        In grid_sample's normalized coordinates ([-1, 1] from the first pixel's outer edge to
        the last's), the output pixel u maps to the input point A (F R u) + t: R rotates
        by k * 90 degrees, F flips x, A and t scale and move [-1, 1]^2 onto the crop box.
        """
        n, _, h, w = x.shape
        device, g = x.device, self.generator
        box = _crop_boxes(n, h, w, self.crop_scale, self.crop_ratio, g, device)
        x0, y0, bw, bh = box.unbind(1)
        flip = torch.where(_rand(n, g, device) < self.flip_p, -1.0, 1.0)
        k = torch.zeros(n, device=device)
        if self.rotate_p > 0:
            k = torch.where(_rand(n, g, device) < self.rotate_p, _randint(1, 4, (n,), g, device).float(), k)
        cos, sin = torch.cos(k * math.pi / 2).round(), torch.sin(k * math.pi / 2).round()
        sx, sy = bw / w, bh / h
        theta = torch.stack([
            torch.stack([sx * flip * cos, -sx * flip * sin, 2 * (x0 + bw / 2) / w - 1], 1),
            torch.stack([sy * sin, sy * cos, 2 * (y0 + bh / 2) / h - 1], 1),
        ], 1).to(x.dtype)
        grid = F.affine_grid(theta, [n, x.shape[1], *self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        n, device, g = len(x), x.device, self.generator
        b, c, s, h = self.jitter
        apply = _rand(n, g, device) < self.jitter_p
        # torchvision's ColorJitter: factors uniform in [max(0, 1 - v), 1 + v], hue in [-h, h]
        factors = [_uniform(max(0.0, 1 - v), 1 + v, n, g, device) for v in (b, c, s)]
        hue = _uniform(-h, h, n, g, device)
        order = _rand((n, 4), g, device).argsort(1)  # a random permutation per image
        skip = ~apply[:, None]  # images that are not jittered are left out of every step
        if x.shape[1] == 1:
            skip = skip | (order == 3)  # gray images have no hue
        return color_jitter(x, *factors, hue, torch.where(skip, -1, order))


# Panels of the lecture's augmentation gallery (after Chen et al. 2020, Figure 4).
GALLERY_PANELS = ("original", "crop+resize", "crop+resize+flip", "distort", "rotate", "noise")


def gallery_transforms(size: int, *, generator: torch.Generator | None = None,
                       noise_std: float = 0.1) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """One transform per panel of the lecture's SimCLR gallery, each doing only its step, always.

    Keys are `GALLERY_PANELS`: "original" (identity), "crop+resize" (random resized crop,
    scale (0.08, 1)), "crop+resize+flip" (the same, then a horizontal flip), "distort"
    (colour jitter of strength 1), "rotate" (90, 180 or 270
    degrees), "noise" (Gaussian, standard deviation `noise_std`). Each maps a batch to a batch.
    """
    off = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, generator=generator)
    whole = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))  # no crop: the image itself
    return {
        "original": lambda x: x.clone(),
        "crop+resize": SimCLRViews(size, **off).view,
        "crop+resize+flip": SimCLRViews(size, **{**off, "flip_p": 1.0}).view,
        "distort": SimCLRViews(size, **{**off, **whole, "jitter_p": 1.0}).view,
        "rotate": SimCLRViews(size, **{**off, **whole, "rotate_p": 1.0}).view,
        "noise": SimCLRViews(size, **{**off, **whole, "noise_p": 1.0, "noise_std": noise_std}).view,
    }
