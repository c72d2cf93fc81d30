"""What this box gives two streams of work at once against one: the ceiling of any speed-up from
1 to 2 workers measured on it (docs/performance.md, the cluster's goal of 1.8x).

Each workload is a fresh Python process, run `--jobs` times one after another (one stream),
then as two such streams at once; the ratio is twice the first wall over the second (2.00x:
the second core adds a whole core). The workloads are what a student's grading is made of:
plain Python, importing the kernels' libraries, and single-threaded torch training steps.

    python benchmarks/bench_cores.py [--jobs 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

WORKLOADS = {
    "plain Python (a loop of 30 million additions)": "s = 0\nfor i in range(30_000_000):\n    s += i",
    "importing torch, torchvision, scikit-learn and matplotlib":
        "import torch, torchvision, sklearn.datasets, sklearn.linear_model, matplotlib.pyplot",
    "torch, one thread: 60 steps of a small CNN on 64 images of 32x32": """
import torch
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(10))
x = torch.randn(64, 3, 32, 32)
model(x)
opt = torch.optim.SGD(model.parameters(), 0.1)
for _ in range(60):
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
""",
}


def stream(code: str, jobs: int) -> None:
    for _ in range(jobs):
        subprocess.run([sys.executable, "-c", code], check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| workload | one job alone (s) | two streams against one: each repeat | median |")
    print("| --- | ---: | --- | ---: |")
    for name, code in WORKLOADS.items():
        ratios, alone = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            stream(code, args.jobs)
            one = time.perf_counter() - start
            start = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda _: stream(code, args.jobs), range(2)))
            ratios.append(2 * one / (time.perf_counter() - start))
            alone.append(one / args.jobs)
        print(f"| {name} | {statistics.median(alone):.2f} | {', '.join(f'{r:.2f}x' for r in ratios)} | "
              f"**{statistics.median(ratios):.2f}x** |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
