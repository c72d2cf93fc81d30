"""Speed of course_utils.attacks next to torchattacks 3.3.0, and next to the floor.

On one model and one batch, in one process, this times

* `course_utils.attacks.pgd` vs `torchattacks.PGD` (and `PGDL2`), same steps, random_start=False;
* `course_utils.attacks.fgsm` vs `torchattacks.FGSM`;
* the floor: the attack's forward+backward passes of the model alone, with respect to the
  input (`steps` of them for PGD, one for FGSM), which no gradient attack can beat;

and prints a markdown table of median times and the ratios ours/torchattacks (goal <= 1.0)
and ours/floor (goal <= 1.1), with the largest difference between the two libraries' outputs.
Runs are interleaved (each round times every method once), so load from other processes hits
all methods alike; the median over rounds is reported.

    python benchmarks/bench_attacks.py [--device cpu|cuda] [--batch 128] [--steps 10]
                                       [--models small_cnn,resnet18] [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torchattacks  # noqa: E402

from course_utils.attacks import fgsm, pgd  # noqa: E402
from course_utils.data import load_digits  # noqa: E402
from course_utils.models import build_model  # noqa: E402

EPS, EPS_L2 = 8 / 255, 0.5


def batch_of_digits(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` test digits (3x32x32 in [0, 1]), repeating the 360 test images when n is larger."""
    x, y = load_digits("test").tensors
    reps = -(-n // len(x))
    return x.repeat(reps, 1, 1, 1)[:n].to(device), y.repeat(reps)[:n].to(device)


def input_gradient_passes(model, x, y, passes: int) -> None:
    """The floor: `passes` forward+backward passes with respect to the input only."""
    for _ in range(passes):
        x_req = x.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(x_req), y), x_req)


def median_times(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                 repeats: int) -> dict[str, float]:
    """Median wall time (s) of each function, timed in interleaved rounds after warm-up."""
    def once(fn):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        for fn in fns.values():
            once(fn)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(once(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_model(name: str, x, y, steps: int, device: torch.device, warmup: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(name).to(device).eval()
    alpha, alpha_l2 = 2.5 * EPS / steps, 2.5 * EPS_L2 / steps  # a common choice: the steps can cross the ball 2.5 times
    cases = {
        "fgsm": (lambda: fgsm(model, x, y, EPS),
                 torchattacks.FGSM(model, eps=EPS),
                 lambda: input_gradient_passes(model, x, y, 1)),
        f"pgd linf ({steps} steps)": (
            lambda: pgd(model, x, y, EPS, alpha, steps, random_start=False),
            torchattacks.PGD(model, eps=EPS, alpha=alpha, steps=steps, random_start=False),
            lambda: input_gradient_passes(model, x, y, steps)),
        f"pgd l2 ({steps} steps)": (
            lambda: pgd(model, x, y, EPS_L2, alpha_l2, steps, norm="l2", random_start=False),
            torchattacks.PGDL2(model, eps=EPS_L2, alpha=alpha_l2, steps=steps, random_start=False),
            lambda: input_gradient_passes(model, x, y, steps)),
    }
    rows = []
    for attack, (ours, theirs, floor) in cases.items():
        t = median_times({"ours": ours, "torchattacks": lambda: theirs(x, y), "floor": floor}, device, warmup, repeats)
        diff = (ours() - theirs(x, y)).abs().max().item()
        rows.append({"model": name, "attack": attack, **t, "diff": diff})
        print(f"  {name:9s} {attack:22s} done", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | attack | ours (ms) | torchattacks (ms) | floor (ms) | ours / torchattacks | ours / floor "
             "| max abs diff |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['attack']} | {1e3 * r['ours']:.1f} | {1e3 * r['torchattacks']:.1f} | "
                     f"{1e3 * r['floor']:.1f} | {r['ours'] / r['torchattacks']:.2f} | {r['ours'] / r['floor']:.2f} | "
                     f"{r['diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", default="small_cnn", help="comma-separated: small_cnn, resnet18")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = batch_of_digits(args.batch, device)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name.strip(), x, y, args.steps, device, args.warmup, args.repeats)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"device {device.type}{gpu}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}; batch {args.batch} x 3x32x32, eps 8/255 (L2: {EPS_L2}), "
          f"float32, median of {args.repeats} interleaved rounds after {args.warmup} warm-up\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
