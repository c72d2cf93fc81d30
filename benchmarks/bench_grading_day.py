"""The TA's grading day for a class of `--students` (1,000): export, feedback, index.html, similarity.

No grading of the class: one whole-lab submission (every answer right) is autograded for real,
and its course-folder entry (gradebook rows, autograded notebooks with the grade profile's
outputs, feedback pages, saved result) is copied to `--students` synthetic students with random
scores, named mistakes, late flags and written grades (a third of the written answers left
ungraded). Then, each timed in this process, side by side with what a TA would otherwise run:

- `course-lab export` in its three formats, against `nbgrader export` (its generic CSV);
- `course-lab feedback` after a TA graded the written answers of the whole class (the pages of
  the notebooks with written answers change: 2 per student), against `nbgrader generate_feedback`
  (timed on `--sample` students and scaled, since it renders every page of every student);
- `OUT/index.html` (`class_report.refresh`);
- the similarity pass over answers made from the solution, the independent answers and the
  blank release, renamed at random, with a few copied pairs, against copydetect's comparison of
  every pair (timed on `--sample` students' pairs and scaled to the class's).

    python benchmarks/bench_grading_day.py [--students 1000] [--sample 40]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout without installing

from grading_fixtures import RELEASE, independent, load, release_names, solved, write_student  # noqa: E402

from course_utils.grading import class_report, course_folder, final_grades, similarity  # noqa: E402
from course_utils.grading.autograde import autograde  # noqa: E402

MISTAKES = ["not the argmax over classes", "a count, not a fraction", "other",
            "visible tests failed (the hidden check did not run)"]


def synthetic_class(out: Path, students: int, seed: int = 0) -> None:
    """`out` with one really graded student copied to `students` synthetic ones."""
    from nbgrader.api import Gradebook

    rng = random.Random(seed)
    subs = out.parent / "one"
    write_student(subs, "s0000", {n: solved(n) for n in release_names()})
    autograde(subs, out, course_root=ROOT, workers=1, timeout=60, progress=False)
    state = json.loads((out / ".autograde-state.json").read_text())
    model = state["s0000"]
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for i in range(1, students):
            sid = f"s{i:04d}"
            gb.add_student(sid, lms_user_id=str(10000 + i))
            sub = gb.add_submission("lab4", sid)
            for nb in sub.notebooks:
                for grade in nb.grades:
                    if grade.max_score and grade.cell.cell_type == "markdown":
                        graded = rng.random() < 2 / 3
                        grade.auto_score, grade.needs_manual_grade = None, not graded
                        grade.manual_score = rng.choice([0.0, 1.0, grade.max_score]) if graded else None
                    else:
                        grade.auto_score = rng.choice([0.0, grade.max_score, grade.max_score])
                        grade.needs_manual_grade = False
            shutil.copytree(out / "autograded" / "s0000", out / "autograded" / sid)
            shutil.copytree(out / "feedback" / "s0000", out / "feedback" / sid)
            lost = {k: 2.0 for k in rng.sample(list(_cells(out)), rng.randint(0, 4))}
            state[sid] = {**model, "student_id": sid, "lost": lost, "late": rng.random() < 0.1,
                          "mistakes": {k: rng.choice(MISTAKES) for k in lost}, "canvas_id": str(10000 + i)}
        gb.db.commit()
    (out / ".autograde-state.json").write_text(json.dumps(state))
    course_folder.mark_feedback_current(out, sorted(state))  # (as autograde does for the pages it renders)


def _cells(out: Path) -> list[str]:
    points = json.loads((out / "points.json").read_text())
    return [f"{nb}/{g}" for nb, cells in points.items() for g in cells]


def grade_written_answers(out: Path, seed: int = 1) -> int:
    """A TA grades every written answer of the class and comments on some: the pages to render again."""
    from nbgrader.api import Gradebook

    rng = random.Random(seed)
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for sub in gb.find_assignment("lab4").submissions:
            for nb in sub.notebooks:
                written = {g.name for g in nb.grades if g.cell.cell_type == "markdown"}
                for grade in nb.grades:
                    if grade.name in written:
                        grade.manual_score, grade.needs_manual_grade = grade.max_score - 0.5, False  # (all change)
                for comment in nb.comments:
                    if comment.name in written and rng.random() < 0.3:
                        comment.manual_comment = "Good: say which cue, and why it misleads the model."
        gb.db.commit()
    return sum(1 for _ in (out / "autograded").iterdir()) * 2


def synthetic_answers(students: int, seed: int = 2) -> dict[str, str]:
    """Answer code per student: each exercise from the solution, the independent answers or the blank
    release, names renamed at random; every 50th student copies (renamed) the one before."""
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-answers-"))
    variants = {}
    for kind, make in (("solution", solved), ("independent", independent), ("blank", lambda n: load(RELEASE / n))):
        (folder / kind).mkdir()
        for name in release_names():
            (folder / kind / name).write_text(json.dumps(make(name)))
        code = similarity.answer_code(sorted((folder / kind).glob("*.ipynb")))
        variants[kind] = {block.split("\n", 1)[0]: block for block in ("\n" + code).split("\n# ")[1:]}
    shutil.rmtree(folder)
    names = ["x", "y", "out", "pred", "res", "tmp", "val", "acc", "total", "z"]
    # a student's own way of writing: statements of different shapes (names and literals are
    # normalised away: only a shape tells two writers apart), at random places
    shapes = ["    {n} = {m}", "    if {n} is None:\n        {n} = {m}", "    {n} = [{m}] * 2", "    assert {n} >= 0",
              "    {n} = float({m})", "    for _ in range(1):\n        {n} = {m}", "    {n} = ({m}, {m})",
              "    {n} = {m} if {m} else 0", "    {n} = not {m}", "    {n} = {{'k': {m}}}"]
    answers, keys = {}, list(variants["solution"])
    for i in range(students):
        if i % 50 == 1:
            copied = answers[f"s{i - 1:04d}"]
            answers[f"s{i:04d}"] = re.sub(r"\blogits\b", "scores", copied)
            continue
        blocks = []
        for key in keys:
            kind = rng.choice(["solution", "independent", "blank", "independent"])
            block = variants[kind].get(key, variants["blank"].get(key, ""))
            for word in ("result", "correct", "loss", "delta"):
                block = re.sub(rf"\b{word}\b", rng.choice(names) + str(rng.randint(0, 9)), block)
            lines = block.split("\n")
            for _ in range(rng.randint(1, 3)):
                at = rng.randint(2, max(2, len(lines)))
                lines.insert(at, rng.choice(shapes).format(n=rng.choice(names), m=rng.randint(0, 9)))
            blocks.append("# " + "\n".join(lines))
        answers[f"s{i:04d}"] = "\n".join(blocks)
    return answers


def timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=40, help="students for the scaled nbgrader/copydetect runs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # (SQLAlchemy's autoflush notes inside nbgrader's add_submission)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="bench-grading-day-") as tmp:
        out = Path(tmp) / "out"
        print(f"Building a class of {args.students} (one real grading, copied) ...", flush=True)
        _, build = timed("build", synthetic_class, out, args.students)
        rows = {}
        for fmt in ("csv", "canvas", "moodle"):
            _, rows[f"export --format {fmt}"] = timed(f"course-lab export --format {fmt}", final_grades.export, out,
                                                      fmt=fmt)
        _, theirs = timed("nbgrader export", subprocess.run, [sys.executable, "-m", "nbgrader", "export",
                                                              "--log-level=ERROR"], cwd=out, env=env, check=True)
        rows["nbgrader export (its CSV)"] = theirs
        _, rows["index.html"] = timed("index.html", class_report.refresh, out)
        grade_written_answers(out)
        written, rows["feedback (changed pages)"] = timed("course-lab feedback (the pages whose grades changed)",
                                                          course_folder.regenerate_feedback, out)
        print(f"    ({len(written)} pages rendered)")
        sample = [f"s{i:04d}" for i in range(args.sample)]
        _, theirs = timed(f"nbgrader generate_feedback, {args.sample} students", _nbgrader_feedback, out, sample, env)
        rows["nbgrader generate_feedback (scaled)"] = theirs * args.students / args.sample
        answers = synthetic_answers(args.students)
        release = "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                            for p in sorted(RELEASE.glob("*.ipynb")) for c in load(p)["cells"] if c["cell_type"] == "code")
        pairs, rows["similarity"] = timed("similarity", similarity.similar_pairs, answers, release)
        _, theirs = timed(f"copydetect, every pair of {args.sample}", _all_pairs, dict(list(answers.items())[:args.sample]),
                          release)
        every = args.students * (args.students - 1) / 2
        rows["copydetect, every pair (scaled)"] = theirs * every / (args.sample * (args.sample - 1) / 2)
        planted = {(f"s{i - 1:04d}", f"s{i:04d}") for i in range(args.students) if i % 50 == 1}
        found = {(p.a, p.b) for p in pairs}
        print(f"\nA class of {args.students} (built in {build:.0f} s); similar pairs: {len(found & planted)} of the "
              f"{len(planted)} planted copies found, {len(found - planted)} other pairs listed\n")
        print("| step | seconds | ratio |")
        print("| --- | ---: | ---: |")
        ratios = {"export --format csv": "nbgrader export (its CSV)", "feedback (changed pages)":
                  "nbgrader generate_feedback (scaled)", "similarity": "copydetect, every pair (scaled)"}
        for step, seconds in rows.items():
            base = ratios.get(step)
            print(f"| {step} | {seconds:.1f} | {f'{seconds / rows[base]:.2f}x' if base else ''} |")


def _nbgrader_feedback(out: Path, students: list[str], env: dict) -> None:
    copy = out.parent / "nbgrader-feedback"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("feedback", "similarity"), dirs_exist_ok=True)
    for sid in [p.name for p in (copy / "autograded").iterdir() if p.name not in students]:
        shutil.rmtree(copy / "autograded" / sid)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", "lab4", "--force", "--log-level=ERROR"],
                   cwd=copy, env=env, check=True)


def _all_pairs(answers: dict[str, str], release: str) -> int:
    import numpy as np
    from copydetect import compare_files

    boilerplate = np.array(sorted(similarity._fingerprint(release).hashes))
    prints = [similarity._fingerprint(code, boilerplate) for code in answers.values()]
    found = 0
    for i, a in enumerate(prints):
        for b in prints[i + 1:]:
            _, (sa, sb), _ = compare_files(a, b)
            found += max(sa, sb) >= similarity.THRESHOLD
    return found


if __name__ == "__main__":
    main()
