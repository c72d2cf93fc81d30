"""`course-lab`: the lab's command line. Each subcommand is one function below."""
from __future__ import annotations

import argparse
import os
import sys


def _cmd_run(args: argparse.Namespace) -> int:
    from .notebooks import find_notebooks, run_notebooks, summary_table
    from .report import RunProgress, write_index

    paths = find_notebooks(args.solutions, args.notebooks)
    print(f"Running {len(paths)} notebook(s) on the '{args.profile}' profile; outputs go to {args.out}/", flush=True)
    with RunProgress(len(paths)) as progress:
        runs = run_notebooks(paths, profile=args.profile, out_dir=args.out, html=not args.no_html,
                             on_start=progress.start, on_finish=progress.finish)
    index = write_index(runs, args.out, profile=args.profile)
    print()
    print(summary_table(runs))
    print(f"\nEvery number, with the lecture claim it supports: {index}")
    print(f"Executed notebooks: {args.out}/executed/")
    if not args.no_html:
        print(f"Rendered notebooks: {args.out}/html/")
    print(f"Numbers as JSON:    {args.out}/results.json")
    return 1 if any(r.status != "ok" for r in runs) else 0


def _cmd_release(args: argparse.Namespace) -> int:
    from .notebooks import generate_release

    out = generate_release(args.root)
    print(f"Release regenerated in {out}")
    if args.no_wheel:
        return 0
    from .student_wheel import UnsafeWheel, build_wheel

    try:
        wheel = build_wheel(args.root)
    except (RuntimeError, UnsafeWheel) as err:
        print(f"course-lab release: {err}", file=sys.stderr)
        return 1
    print(f"Students' wheel (no hidden checks, no solutions): {wheel}\n"
          f"Give students {out}/ and the wheel: pip install {wheel.name}")
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


def _cmd_autograde(args: argparse.Namespace) -> int:
    from .grading.autograde import autograde
    from .grading.cgroups import LimitsUnavailable
    from .grading.cluster_tls import InsecureScheduler
    from .grading.sandbox import SandboxUnavailable
    from .grading.systemd import delegated_or_none

    if not args.no_limits:  # cgroup v2 without a cgroup of its own: again, in a delegated systemd scope
        command = delegated_or_none(sys.argv)
        if command is not None:
            os.execvp(command[0], command)
    security = None
    try:
        if args.tls:
            from .grading.cluster_tls import security as tls_security

            security = tls_security(args.tls)
        results = autograde(args.submissions, args.out, course_root=args.course_root, workers=args.workers,
                            timeout=args.timeout, memory_limit_gb=args.memory_limit, id_pattern=args.id_pattern,
                            sandboxed=not args.no_sandbox, scheduler=args.scheduler, limits=not args.no_limits,
                            budget=args.student_budget, security=security,
                            insecure_scheduler=args.insecure_scheduler, only=args.only, remove=args.remove)
    except (SandboxUnavailable, LimitsUnavailable, InsecureScheduler) as err:
        print(f"course-lab autograde: refusing to grade: {err}", file=sys.stderr)
        return 2
    except (ImportError, FileNotFoundError) as err:  # --scheduler without the cluster extra; --tls without its files
        print(f"course-lab autograde: {err}", file=sys.stderr)
        return 2
    print(f"Graded {len(results)} students: {args.out}/grades.csv, {args.out}/report.txt, {args.out}/feedback/")
    return 0


def _cmd_cluster_certs(args: argparse.Namespace) -> int:
    from .grading.cluster_tls import make_certificates

    try:
        folder = make_certificates(args.folder)
    except (FileExistsError, ImportError) as err:
        print(f"course-lab cluster-certs: {err}", file=sys.stderr)
        return 1
    print(f"Certificates in {folder}/: ca.pem on every machine; scheduler.pem and scheduler-key.pem for the "
          "scheduler, worker.pem and worker-key.pem for the workers, client.pem and client-key.pem here "
          f"(course-lab autograde ... --tls {folder}). Keep ca-key.pem here, on no other machine.")
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    folder = Path(args.notebook_dir).resolve()
    if not folder.is_dir():
        print(f"course-lab lab: no folder {folder}; run it from the project's root", file=sys.stderr)
        return 1
    return _serve("lab", folder, args.port, not args.no_browser, lambda server: (
        f"\nLab 4 in JupyterLab\n  notebooks: {folder}\n  open:      {server.url()}\nStop it with Ctrl-C.\n"))


def _server_options(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that start JupyterLab (`lab`, `formgrade`)."""
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser (print the address only)")


def _cmd_formgrade(args: argparse.Namespace) -> int:
    from .lab_server import NO_CODE

    folder = _graded_class("formgrade", args.out)
    if folder is None:
        return 1
    return _serve("formgrade", folder, args.port, not args.no_browser, lambda server: (
        f"\nLab 4's class in formgrader (written answers, comments, the autograded points)\n"
        f"  course folder: {folder}\n  open:          {server.login_url('/formgrader/gradebook')}\n"
        "No kernel can start in this server: nothing a student wrote runs. Stop it with Ctrl-C.\n"), extra=NO_CODE)


def _serve(command: str, folder, port: int, browser: bool, banner, extra: list[str] = ()) -> int:
    """JupyterLab on `folder` until Ctrl-C, with `banner(server)` printed once it answers."""
    import secrets
    import signal
    import subprocess

    from .lab_server import LabServer, free_port, lab_command, lab_env

    port = port or free_port(preferred=8888)
    token = secrets.token_hex(16)
    children: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda *_: [p.terminate() for p in children])  # a stopped launcher stops its server
    # cwd: nbgrader's extensions take the folder they start in as the course root, which must
    # lie inside the served folder (the repository root, with nbgrader_config.py, does not)
    children.append(subprocess.Popen(lab_command(folder, port=port, token=token, open_browser=browser, extra=extra),
                                     env=lab_env(), cwd=folder))
    server = LabServer(children[0], f"http://127.0.0.1:{port}", token, folder)
    try:
        server.wait_ready()
        print(banner(server), flush=True)
        return server.process.wait()
    except (RuntimeError, TimeoutError) as err:
        print(f"course-lab {command}: {err} (is port {port} taken? try --port)", file=sys.stderr)
        server.stop()
        return 1
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached JupyterLab too; make sure it stops
        server.process.terminate()
        return server.process.wait()


def _graded_class(command: str, folder: str):
    """`folder` as a Path if `course-lab autograde` wrote a class there, else None (and says so)."""
    from pathlib import Path

    out = Path(folder).resolve()
    if not (out / "gradebook.db").is_file() or not (out / "nbgrader_config.py").is_file():
        print(f"course-lab {command}: {out} is not a graded class (run course-lab autograde SUBMISSIONS --out "
              f"{folder} first)", file=sys.stderr)
        return None
    return out


def _cmd_export(args: argparse.Namespace) -> int:
    from .grading import final_grades, lms

    out = _graded_class("export", args.out)
    if out is None:
        return 1
    try:
        roster = lms.read_roster(args.roster, args.roster_key) if args.roster else None
    except (OSError, ValueError) as err:
        print(f"course-lab export: {err}", file=sys.stderr)
        return 1
    path, notes = final_grades.export(out, fmt=args.format, path=args.output, roster=roster,
                                      assignment=args.assignment, id_column=args.id_column,
                                      late_penalty=args.late_penalty)
    from .grading import class_report

    index = class_report.refresh(out)
    for note in notes:
        print(f"! {note}")
    print(f"Final grades ({args.format}): {path}\nThe class at a glance: {index}")
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from .grading.course_folder import regenerate_feedback

    out = _graded_class("feedback", args.out)
    if out is None:
        return 1
    try:
        pages = regenerate_feedback(out, args.student or None, force=args.all)
    except RuntimeError as err:
        print(f"course-lab feedback: {err}", file=sys.stderr)
        return 1
    print(f"{len(pages)} feedback page(s) written again, with the manual grades and comments: {out}/feedback/")
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

    release = sub.add_parser("release", help="regenerate labs/lab4 from solutions/lab4 with nbgrader; build the "
                                             "students' wheel")
    release.add_argument("--root", default=".", help="course root holding nbgrader_config.py (default: .)")
    release.add_argument("--no-wheel", action="store_true",
                         help="regenerate the notebooks only (by default the students' wheel is built into dist/ from a "
                              "clean copy of the package, and checked: no hidden checks, no solutions)")
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

    grade = sub.add_parser(
        "autograde", help="autograde a folder of submissions with nbgrader: grades.csv, feedback, report",
        description="Autograde every submission with nbgrader on the grade profile, each student in a course "
                    "folder and gradebook of their own, N at a time. SUBMISSIONS holds either nbgrader's layout "
                    "(<student_id>/lab4/*.ipynb) or the zips and loose notebooks an LMS exports; Canvas's names give "
                    "the student, their Canvas id and LATE, other names the id up to the first '_' or '.' "
                    "(jdoe_lab4.zip -> jdoe) unless --id-pattern says otherwise. Writes OUT/grades.csv, "
                    "OUT/feedback/<student_id>/*.html, OUT/report.txt, OUT/index.html and makes OUT the class's "
                    "nbgrader course folder (course-lab formgrade OUT). Run again: changed submissions are graded "
                    "again and everyone else is kept. Every student's kernel runs in a bubblewrap sandbox, and "
                    "points come from hidden checks run outside it.")
    grade.add_argument("submissions", metavar="SUBMISSIONS", help="folder of student folders or zip files")
    grade.add_argument("--out", required=True, metavar="OUT", help="output folder")
    grade.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                       help="students graded at once on this machine (default: the number of CPU cores)")
    grade.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on the workers of a running Dask cluster instead (e.g. tcp://10.0.0.5:8786); "
                            'needs pip install "course-utils[cluster]" here and on every worker (docs/grading.md)')
    grade.add_argument("--timeout", type=int, default=60, metavar="SECONDS",
                       help="time limit of one notebook cell (default: 60)")
    grade.add_argument("--memory-limit", type=float, default=6.0, metavar="GB",
                       help="memory of all of a student's processes together, tmpfs included (and the address-space "
                            "limit of each; default: 6)")
    grade.add_argument("--id-pattern", metavar="REGEX",
                       help="regular expression with a group named 'student' applied to zip file names")
    grade.add_argument("--course-root", default=".", help="folder holding nbgrader_config.py and solutions/ (default: .)")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="grade without the bubblewrap sandbox (students' code then runs with your rights; the "
                            "report's first line says so). Only for submissions you trust")
    grade.add_argument("--no-limits", action="store_true",
                       help="grade without a cgroup per student (where cgroups cannot be had: one student's processes "
                            "could then take the machine's memory and CPU from the others; the report says so)")
    grade.add_argument("--student-budget", type=int, default=0, metavar="SECONDS",
                       help="wall-clock seconds for one student's whole grading (default: 60 + per notebook the cell "
                            "time limit + 60); a student stopped by it keeps the notebooks already graded")
    grade.add_argument("--tls", metavar="DIR",
                       help="with --scheduler tls://...: the folder of `course-lab cluster-certs` (ca.pem, client.pem, "
                            "client-key.pem)")
    grade.add_argument("--insecure-scheduler", action="store_true",
                       help="grade through a plain tcp:// scheduler off this machine (anyone on its network could "
                            "drive the workers; the report says so)")
    grade.add_argument("--only", nargs="+", metavar="ID",
                       help="grade only these students again, even when their submission did not change (an appeal, "
                            "a late file); everyone else's results, manual grades included, stay as they are")
    grade.add_argument("--remove", nargs="+", metavar="ID",
                       help="take these students out of OUT (their grades, feedback and manual grades)")
    grade.set_defaults(func=_cmd_autograde)

    formgrade = sub.add_parser("formgrade", help="grade written answers in formgrader, on a graded class's OUT",
                               description="Start JupyterLab with nbgrader's formgrader on OUT (the course folder "
                                           "that course-lab autograde writes) and print the address. No kernel can "
                                           "start in it: nothing a student wrote runs.")
    formgrade.add_argument("out", metavar="OUT", help="the output folder of course-lab autograde")
    _server_options(formgrade)
    formgrade.set_defaults(func=_cmd_formgrade)

    export = sub.add_parser("export", help="final grades (autograded + written) as CSV, for Canvas or for Moodle",
                            description="Write one row per student from OUT's gradebook: autograded and written "
                                        "points per notebook, the total and maximum, and how many written answers "
                                        "are still ungraded. Also refreshes OUT/index.html.")
    export.add_argument("out", metavar="OUT", help="the output folder of course-lab autograde")
    export.add_argument("--format", choices=["csv", "canvas", "moodle"], default="csv",
                        help="csv (default): this lab's columns; canvas: Canvas's gradebook import; moodle: Moodle's "
                             "CSV grade import")
    export.add_argument("--roster", metavar="FILE",
                        help="the LMS's gradebook export (CSV): names and ids of every student, those without a "
                             "submission included (they get 0)")
    export.add_argument("--roster-key", metavar="COLUMN",
                        help="the roster's column holding the ids grading uses (default: SIS Login ID, Username, "
                             "ID number, Email address or ID, the first it has)")
    export.add_argument("--id-column", default="Username", metavar="COLUMN",
                        help="moodle: the roster column to identify students by (map it on import; default: Username)")
    export.add_argument("--assignment", default="Lab 4", metavar="NAME",
                        help='the grade column\'s title (Canvas: "Lab 4 (123)" updates that assignment; default: Lab 4)')
    export.add_argument("--late-penalty", type=float, default=0.0, metavar="FRACTION",
                        help="taken off the total of a submission the LMS marked late (0.1: 10%%; default 0)")
    export.add_argument("--output", metavar="FILE",
                        help="where to write (default: OUT/final_grades.csv, canvas_grades.csv or moodle_grades.csv)")
    export.set_defaults(func=_cmd_export)

    feedback = sub.add_parser("feedback", help="feedback pages again, with the written points and the TA's comments",
                              description="Render every student's feedback pages again from OUT's gradebook after "
                                          "manual grading (nothing runs: the notebooks are rendered, sanitized).")
    feedback.add_argument("out", metavar="OUT", help="the output folder of course-lab autograde")
    feedback.add_argument("--student", nargs="+", metavar="ID", help="only these students")
    feedback.add_argument("--all", action="store_true",
                          help="every page, not only those whose grades or comments changed since they were rendered")
    feedback.set_defaults(func=_cmd_feedback)

    certs = sub.add_parser("cluster-certs", help="make the TLS certificates of a grading cluster (docs/grading.md)",
                           description="Make a certificate authority and certificates for a Dask grading cluster's "
                                       "scheduler, workers and the TA's client, so that only these can connect.")
    certs.add_argument("folder", metavar="DIR", help="a new folder for the certificates")
    certs.set_defaults(func=_cmd_cluster_certs)

    lab = sub.add_parser("lab", help="open the student notebooks in JupyterLab and print the address to open",
                         description="Start JupyterLab from this environment on the student notebooks, on a "
                                     "loopback port with a fresh token, and print the address to open.")
    lab.add_argument("--notebook-dir", default="labs/lab4", help="folder to serve (default: labs/lab4)")
    _server_options(lab)
    lab.set_defaults(func=_cmd_lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
