"""`course_utils.train.fit` against a bare PyTorch training loop: same model, data, optimizer.

    python benchmarks/bench_fit.py [--device cpu|cuda] [--epochs 2] [--repeats 3]

Both train a SmallCNN from the same initial weights on the digits training set with Adam and
a one-cycle schedule; the runs alternate so that machine noise hits both alike. The bare
loop is what a student would write: no history, no progress bar, no AMP bookkeeping.
Prints the median seconds of each and the overhead ratio (goal: fit / bare <= 1.10).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from course_utils.data import load_digits, make_loader
from course_utils.models import SmallCNN
from course_utils.train import fit


def bare_loop(model, loader, epochs, device, lr):
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = SmallCNN()
    loader = make_loader(load_digits("train"), args.batch, shuffle=True, device=device)
    runs = {"bare loop": [], "fit(progress=False)": [], "fit (progress bar)": []}
    jobs = {
        "bare loop": lambda m: bare_loop(m, loader, args.epochs, device, 1e-3),
        # amp=False on both sides: the comparison is of the loop's overhead, not of AMP
        "fit(progress=False)": lambda m: fit(m, loader, epochs=args.epochs, device=device, amp=False, progress=False),
        "fit (progress bar)": lambda m: fit(m, loader, epochs=args.epochs, device=device, amp=False, progress=True),
    }
    for name, job in jobs.items():  # warm-up
        job(copy.deepcopy(base))
    for _ in range(args.repeats):
        for name, job in jobs.items():
            model = copy.deepcopy(base)
            start = time.perf_counter()
            job(model)
            runs[name].append(time.perf_counter() - start)
    bare = statistics.median(runs["bare loop"])
    print(f"\n{args.epochs} epochs of SmallCNN on {len(loader.dataset)} digits, batch {args.batch}, "
          f"{device}, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| loop | seconds | ratio to bare loop |\n| --- | ---: | ---: |")
    for name, times in runs.items():
        print(f"| {name} | {statistics.median(times):.2f} | {statistics.median(times) / bare:.3f} |")


if __name__ == "__main__":
    main()
