"""Colourization as self-supervised correspondence for video (notebook 07).

Vondrick, Shrivastava, Fathi, Guadarrama & Murphy, "Tracking Emerges by Colorizing Videos"
(ECCV 2018): colour a gray target frame by *copying* colours from a colour reference frame.
An embedding network f sees both frames in gray; each target pixel i points at reference
pixels j with weights A_ij = softmax_j(f_i . f_j / T) and takes their colours,
c_i = sum_j A_ij c_j. The only supervision is the target's own colours, so it is free; and
the surest way to copy the right colour is to point at the same point of the scene, so the
pointer A becomes a tracker that nobody trained to track: the paper propagates segmentation
masks and keypoints with it. (They predict 16 quantized colours with a
cross-entropy; this demo regresses RGB with a squared error, as `dense` does.)

The video here is synthetic and tiny: a digit painted with a photo texture moves over a photo
while the camera pans the other way, so the true correspondence of every pixel is known; and
the features are raw gray pixels (`luma_patches`), not a trained network, so it shows the
pointer mechanism and what it gives (colours, and a mask carried along), not that training
on colours makes a tracker emerge.

    video = moving_digit_video(digit, background, texture, frames=4, size=24, digit_size=12)
    reference, target = video.frames[:1], video.frames[3:]
    colors, attention = pointer_colorize(reference, luma_patches(to_grayscale(reference)),
                                         luma_patches(to_grayscale(target)), temperature=0.01, metric="distance")
    mask = propagate(video.masks[:1], attention)     # the digit's mask, tracked to frame 3
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

__all__ = ["Video", "moving_digit_video", "video_bank", "luma_patches", "pointer_colorize", "propagate",
           "colocated_attention", "tracking_accuracy", "mask_iou"]


@dataclasses.dataclass
class Video:
    """`frames` (T, 3, H, W) in [0, 1]; `masks` (T, 1, H, W), 1 on the digit; `source` (T, 2, H, W):
    for each pixel of frame t, the (row, column) in frame 0 where the same point of the scene is,
    or -1 where it is not visible in frame 0 (it came in at the border or from behind the digit)."""

    frames: torch.Tensor
    masks: torch.Tensor
    source: torch.Tensor


def moving_digit_video(digit: torch.Tensor, background: torch.Tensor, texture: torch.Tensor, *, frames: int = 4,
                       size: int = 24, digit_size: int = 12, digit_step: tuple[int, int] = (2, 2),
                       camera_step: tuple[int, int] = (1, -1), start: tuple[int, int] = (4, 4)) -> Video:
    """A `frames`-frame video of `size`x`size` pixels: the gray `digit` (1, h, w) scaled to
    `digit_size`, painted with `texture` (3, digit_size, digit_size), moves by `digit_step`
    pixels per frame from `start` (top-left, in the frame), over `background` (3, B, B), of which
    the camera shows a `size` window that moves by `camera_step` per frame from the middle.
    Integer shifts, no blur: the true correspondences are exact. (The defaults fit a 32-pixel
    Digits-M background: a 24-pixel window has room to pan.)"""
    steps = frames - 1
    if min(start) < 0 or max(s + steps * d for s, d in zip(start, digit_step)) + digit_size > size or \
            min(s + steps * d for s, d in zip(start, digit_step)) < 0:
        raise ValueError(f"the digit leaves the {size}x{size} frame: start {start}, step {digit_step}, "
                         f"{frames} frames, digit size {digit_size}")
    B = background.shape[-1]
    origin = (B - size) // 2
    if min(origin + steps * c for c in camera_step) < 0 or max(origin + steps * c for c in camera_step) + size > B:
        raise ValueError(f"the camera leaves the {B}x{B} background: step {camera_step}, {frames} frames")
    glyph = F.interpolate(digit[None].float(), size=(digit_size, digit_size), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    glyph = (glyph > 0.35).float()  # a crisp mask: the digit covers a pixel or not
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out_frames, masks, sources = [], [], []
    for t in range(frames):
        cr, cc = origin + t * camera_step[0], origin + t * camera_step[1]
        frame = background[:, cr:cr + size, cc:cc + size].clone()
        mask = torch.zeros(1, size, size)
        dr, dc = start[0] + t * digit_step[0], start[1] + t * digit_step[1]
        mask[:, dr:dr + digit_size, dc:dc + digit_size] = glyph
        frame = mask * F.pad(texture, (dc, size - dc - digit_size, dr, size - dr - digit_size)) + (1 - mask) * frame
        # where each pixel was in frame 0: the digit moved by t * digit_step, the background by -t * camera_step
        on_digit = mask[0] > 0.5
        src_r = torch.where(on_digit, rows - t * digit_step[0], rows + t * camera_step[0])
        src_c = torch.where(on_digit, cols - t * digit_step[1], cols + t * camera_step[1])
        out_frames.append(frame)
        masks.append(mask)
        sources.append(torch.stack([src_r, src_c]))
    masks = torch.stack(masks)
    source = torch.stack(sources)
    inside = (source >= 0).all(1) & (source < size).all(1)
    sr, sc = source[:, 0].clamp(0, size - 1), source[:, 1].clamp(0, size - 1)
    # a background point is visible in frame 0 only if the digit did not cover it there
    covered = (masks[0, 0][sr, sc] > 0.5) & (masks[:, 0] < 0.5)
    visible = inside & ~covered
    source = torch.where(visible[:, None], source, torch.full_like(source, -1))
    return Video(torch.stack(out_frames), masks, source)


def video_bank(digits: torch.Tensor, backgrounds: torch.Tensor, textures: torch.Tensor, *, frames: int = 4,
               size: int = 24, digit_size: int = 12, generator: torch.Generator | None = None) -> list[Video]:
    """One `moving_digit_video` per digit (N, 1, h, w), with its background and texture, in random
    directions: the digit moves 2 pixels per frame along each axis, the camera 1, each way drawn at
    random; the digit starts near the corner it moves away from."""
    videos = []
    for digit, background, texture in zip(digits, backgrounds, textures):
        signs = (torch.randint(0, 2, (4,), generator=generator) * 2 - 1).tolist()
        digit_step, camera_step = (2 * signs[0], 2 * signs[1]), (signs[2], signs[3])
        start = tuple(2 if step > 0 else size - digit_size - 2 for step in digit_step)
        videos.append(moving_digit_video(digit, background, texture, frames=frames, size=size, digit_size=digit_size,
                                         digit_step=digit_step, camera_step=camera_step, start=start))
    return videos


def luma_patches(gray: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Raw-pixel features: each pixel's (2r+1)^2 luma neighbourhood (zero padding), (N, (2r+1)^2, H, W)."""
    n, _, h, w = gray.shape
    return F.unfold(gray[:, :1], 2 * radius + 1, padding=radius).view(n, -1, h, w)


def _attention(reference_features: torch.Tensor, target_features: torch.Tensor, temperature: float,
               metric: str) -> torch.Tensor:
    ref = reference_features.flatten(2)  # (N, D, HW)
    tgt = target_features.flatten(2)
    if metric == "dot":
        logits = tgt.transpose(1, 2) @ ref  # (N, HW target, HW reference)
    elif metric == "distance":  # -|a - b|^2, for raw pixels (a dot product prefers bright patches)
        logits = -(tgt.pow(2).sum(1)[:, :, None] - 2 * tgt.transpose(1, 2) @ ref + ref.pow(2).sum(1)[:, None, :])
    else:
        raise ValueError(f"metric must be 'dot' or 'distance', got {metric!r}")
    return torch.softmax(logits / temperature, dim=-1)


def pointer_colorize(reference_colors: torch.Tensor, reference_features: torch.Tensor,
                     target_features: torch.Tensor, *, temperature: float = 1.0,
                     metric: str = "dot") -> tuple[torch.Tensor, torch.Tensor]:
    """Vondrick et al.'s pointer: the target's colours copied from the reference,
    c_i = sum_j softmax_j(s(f_i, f_j) / T) c_j, with s a dot product (`metric="dot"`, the paper's)
    or minus the squared distance (`"distance"`). Features (N, D, H, W) of both frames, colours
    (N, C, H, W) of the reference. Returns (colours (N, C, H, W), attention (N, HW, HW))."""
    attention = _attention(reference_features, target_features, temperature, metric)
    return propagate(reference_colors, attention), attention


def propagate(values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Anything defined on the reference frame (colours, a mask: (N, C, H, W)) carried to the target
    by the pointer's `attention` (N, HW target, HW reference)."""
    n, c, h, w = values.shape
    return (values.flatten(2) @ attention.transpose(1, 2)).view(n, c, h, w)


def colocated_attention(n: int, height: int, width: int) -> torch.Tensor:
    """The baseline without correspondence, as a pointer: each target pixel points at the reference
    pixel at the same place (N, HW, HW); `propagate` then copies the reference as it is."""
    return torch.eye(height * width).expand(n, -1, -1)


def tracking_accuracy(attention: torch.Tensor, source: torch.Tensor, *, tolerance: int = 1) -> float:
    """Fraction of the target pixels visible in the reference (`source` (N, 2, H, W), -1 elsewhere)
    whose strongest pointer lands within `tolerance` pixels (in rows and in columns) of the point they show."""
    n, _, h, w = source.shape
    best = attention.argmax(-1).view(n, h, w)
    rows, cols = best // w, best % w
    visible = (source >= 0).all(1)
    hit = ((rows - source[:, 0]).abs() <= tolerance) & ((cols - source[:, 1]).abs() <= tolerance)
    return float(hit[visible].float().mean())


def mask_iou(predicted: torch.Tensor, truth: torch.Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of `predicted > threshold` and `truth > 0.5`, over the whole batch."""
    p, t = predicted > threshold, truth > 0.5
    return float((p & t).sum() / (p | t).sum().clamp(min=1))
