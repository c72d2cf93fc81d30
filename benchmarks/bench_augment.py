"""Throughput of the self-supervision augmentations against what a user would otherwise write.

    python benchmarks/bench_augment.py [--device cpu|cuda] [--batch 256] [--threads 1]

On one batch of 32x32 RGB images, in one process, images per second (input images; the
SimCLR rows make two views of each) for:

- SimCLR views, all with the small-image setting (crop scale (0.5, 1), colour jitter
  (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale p 0.2, flip p 0.5, no blur):
  `course_utils.augment.SimCLRViews`; the same steps as a `kornia.augmentation`
  pipeline (same_on_batch=False); torchvision v2's Compose applied image by image in a
  Python loop (the usual Dataset-side pipeline); lightly's `SimCLRTransform` image by image
  (when lightly is installed); and, for reference, torchvision v2 on the whole batch,
  which is fast but *wrong* for contrastive learning: one crop, flip and jitter for all images.
- `rotate_batch` against a per-image loop of `torch.rot90`.
- `PatchLocalization` against a per-image loop of Python-drawn offsets and slices.

Why SimCLRViews is not a kornia pipeline: measured here, kornia's ColorJitter with a hue
term costs more than our whole view (its hue goes through a full RGB -> HSV -> RGB with
generic per-sample parameter handling), and its RandomResizedCrop builds per-sample crop
matrices then warps with a general perspective warp. Writing crop + flip + rotation as one
`affine_grid` / `grid_sample` with per-sample matrices and the colour steps as batched
arithmetic (hue in closed form) is faster on the CPU and the GPU and gives the same
distribution (tests/test_augment.py checks the colour steps against torchvision's).
Tests never assert on time; this script is where performance is measured.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils.augment import PatchLocalization, SimCLRViews, rotate_batch  # noqa: E402

SIZE = 32
CROP_SCALE = (0.5, 1.0)
JITTER = (0.4, 0.4, 0.4, 0.1)


def timed(fn, x, device: torch.device, repeats: int, min_seconds: float = 0.5) -> float:
    """Best seconds per call of fn(x) over `repeats` rounds (each round at least `min_seconds` / repeats)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn(x)  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn(x)
            calls += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / repeats:
                break
        best = min(best, elapsed / calls)
    return best


def simclr_candidates(device: torch.device) -> dict[str, object]:
    """name -> function(batch) making two views of each image, or a string saying why it is missing."""
    import kornia.augmentation as K
    import torchvision.transforms.v2 as T

    out: dict[str, object] = {}
    ours = SimCLRViews.for_small_images(SIZE)
    out["course_utils SimCLRViews"] = ours

    kornia_view = K.AugmentationSequential(
        K.RandomResizedCrop((SIZE, SIZE), scale=CROP_SCALE), K.RandomHorizontalFlip(),
        K.ColorJitter(*JITTER, p=0.8), K.RandomGrayscale(p=0.2), same_on_batch=False).to(device)
    out["kornia AugmentationSequential"] = lambda x: (kornia_view(x), kornia_view(x))

    tv_view = T.Compose([T.RandomResizedCrop(SIZE, scale=CROP_SCALE, antialias=True), T.RandomHorizontalFlip(),
                         T.RandomApply([T.ColorJitter(*JITTER)], p=0.8), T.RandomGrayscale(p=0.2)])
    out["torchvision v2, per-image loop"] = lambda x: (torch.stack([tv_view(img) for img in x]),
                                                        torch.stack([tv_view(img) for img in x]))
    try:
        from lightly.transforms import SimCLRTransform

        # lightly's ToTensor calls torchvision's deprecated to_tensor on every image
        warnings.filterwarnings("ignore", message=r".*to_tensor\(\.\.\.\)` is deprecated")

        lightly_tf = SimCLRTransform(input_size=SIZE, cj_strength=0.5, min_scale=CROP_SCALE[0], gaussian_blur=0.0,
                                     normalize=None)
        lightly_tf([torch.rand(3, SIZE, SIZE, device=device)])  # fail here, not in the timing, if tensors are refused

        def lightly_views(x):
            views = [lightly_tf(img) for img in x]
            return torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])
        out["lightly SimCLRTransform, per-image loop"] = lightly_views
    except Exception as err:  # not installed, or refuses tensors on this device
        out["lightly SimCLRTransform, per-image loop"] = f"n/a ({type(err).__name__}: {err})"[:80]
    out["torchvision v2 on the batch (one crop for all: wrong)"] = lambda x: (tv_view(x), tv_view(x))
    return out


def rotation_loop(x: torch.Tensor):
    images, labels = [], []
    for img in x:
        for k in range(4):
            images.append(torch.rot90(img, k, dims=(1, 2)))
            labels.append(k)
    return torch.stack(images), torch.tensor(labels)


def patch_loop(x: torch.Tensor, patch: int = 8, gap: int = 2, jitter: int = 1):
    offsets = PatchLocalization.NEIGHBOR_OFFSETS
    extent, stride = 3 * patch + 2 * gap + 2 * jitter, patch + gap
    centers, neighbors, labels = [], [], []
    for img in x:
        label = random.randrange(8)
        oy = random.randint(0, img.shape[1] - extent) + jitter
        ox = random.randint(0, img.shape[2] - extent) + jitter
        cy, cx = (oy + stride + random.randint(-jitter, jitter), ox + stride + random.randint(-jitter, jitter))
        ny = oy + stride + offsets[label][0] * stride + random.randint(-jitter, jitter)
        nx = ox + stride + offsets[label][1] * stride + random.randint(-jitter, jitter)
        centers.append(img[:, cy:cy + patch, cx:cx + patch])
        neighbors.append(img[:, ny:ny + patch, nx:nx + patch])
        labels.append(label)
    return torch.stack(centers), torch.stack(neighbors), torch.tensor(labels)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    random.seed(0)
    x = torch.rand(args.batch, 3, SIZE, SIZE, device=device)

    rows = []  # (task, implementation, images/s or reason, baseline name)
    baseline = "torchvision v2, per-image loop"
    for name, fn in simclr_candidates(device).items():
        rows.append(("SimCLR views (x2)", name, fn if isinstance(fn, str) else args.batch / timed(fn, x, device, args.repeats), baseline))
    patches = PatchLocalization(8, 2, 1, color=None)
    for task, base, ours in (("rotation (x4)", ("per-image loop", rotation_loop), ("course_utils rotate_batch", rotate_batch)),
                             ("patch pair", ("per-image loop", patch_loop), ("course_utils PatchLocalization", patches))):
        for name, fn in (ours, base):
            rows.append((task, name, args.batch / timed(fn, x, device, args.repeats), base[0]))

    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), "
          f"batch {args.batch} x 3 x {SIZE} x {SIZE}\n")
    print("| task | implementation | images/s | vs baseline |")
    print("| --- | --- | ---: | ---: |")
    rates = {(t, n): r for t, n, r, _ in rows}
    for task, name, rate, base in rows:
        if isinstance(rate, str):
            print(f"| {task} | {name} | {rate} | |")
            continue
        ratio = rate / rates[task, base] if not isinstance(rates.get((task, base)), str) else float("nan")
        print(f"| {task} | {name} | {rate:,.0f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
