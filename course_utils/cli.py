"""`course-lab`: the lab's command line. Each subcommand is one function below."""
from __future__ import annotations

import argparse
import os
import sys


def _cmd_run(args: argparse.Namespace) -> int:
    from .notebooks import find_notebooks, run_notebooks, summary_table

    paths = find_notebooks(args.solutions, args.notebooks)
    print(f"Executing {len(paths)} notebook(s) on the '{args.profile}' profile; outputs go to {args.out}/")
    runs = run_notebooks(paths, profile=args.profile, out_dir=args.out, html=not args.no_html)
    print()
    print(summary_table(runs))
    print(f"\nExecuted notebooks, HTML and results.json are in {args.out}/")
    return 1 if any(r.status != "ok" for r in runs) else 0


def _cmd_release(args: argparse.Namespace) -> int:
    from .notebooks import generate_release

    out = generate_release(args.root)
    print(f"Release regenerated in {out}")
    return 0


def _cmd_fetch_data(args: argparse.Namespace) -> int:
    if args.data_dir:
        os.environ["COURSE_DATA_DIR"] = args.data_dir
    from .download import DownloadError, describe_assets, fetch_all

    if args.list:
        print(describe_assets())
        return 0
    try:
        fetch_all(args.assets or None, progress=not args.no_progress, keep_archive=args.keep_archives)
    except (DownloadError, KeyError) as err:
        print(f"course-lab fetch-data: {err.args[0]}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course-lab", description="Lab 4: adversarial examples and self-supervision.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="execute every solution notebook with papermill and summarize the results")
    run.add_argument("--profile", default="quick", choices=["quick", "full", "grade"],
                     help="run profile (default: quick; LAB_PROFILE in the environment overrides it)")
    run.add_argument("--notebooks", nargs="*", metavar="PREFIX", help="only notebooks whose name starts with these")
    run.add_argument("--solutions", default="solutions/lab4", help="folder of notebooks to run (default: solutions/lab4)")
    run.add_argument("--out", default="build", help="output folder (default: build)")
    run.add_argument("--no-html", action="store_true", help="skip the HTML rendering")
    run.set_defaults(func=_cmd_run)

    release = sub.add_parser("release", help="regenerate labs/lab4 from solutions/lab4 with nbgrader")
    release.add_argument("--root", default=".", help="course root holding nbgrader_config.py (default: .)")
    release.set_defaults(func=_cmd_release)

    fetch = sub.add_parser(
        "fetch-data", help="download the full profile's data and weights into the data directory",
        description="Download, verify and extract what the full profile needs into the data directory "
                    "(COURSE_DATA_DIR, default ~/.cache/course_utils): CIFAR-10, torchvision's ResNet-50 "
                    "weights and ImageNet-A (the course subset when COURSE_IMAGENET_A_SUBSET_URL is set, "
                    "else the official 690 MB archive). Interrupted downloads resume when run again. "
                    "A TA can run this once and copy the folder to machines without internet.")
    fetch.add_argument("assets", nargs="*", metavar="ASSET",
                       help="only these assets (see --list); default: everything the full profile needs")
    fetch.add_argument("--list", action="store_true", help="show every asset, its size and whether it is fetched")
    fetch.add_argument("--data-dir", metavar="DIR", help="download into DIR instead (sets COURSE_DATA_DIR)")
    fetch.add_argument("--keep-archives", action="store_true", help="keep the .tar files after extracting them")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    fetch.set_defaults(func=_cmd_fetch_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
