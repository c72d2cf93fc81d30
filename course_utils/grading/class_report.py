"""The class at a glance: `OUT/index.html`, written by `autograde` and refreshed by `export`.

One static page (no script; pictures are matplotlib PNGs inside the page; the feedback pages'
policy, `feedback.with_csp`): the score distribution, per test cell the share of full marks,
per hidden check the named mistakes and how many students made each (`StudentResult.mistakes`,
recorded from the checks' `Mistake` names), what went wrong in grading (timeouts, dead
kernels, refused notebooks, the time budget, suspicious answers), the similar pairs
(`similarity.py`), and a table of students linking each one's feedback. Every string a student
controls is escaped.
"""
from __future__ import annotations

import base64
import collections
import html
import io
import json
from pathlib import Path

from .feedback import with_csp

SIMILARITY_FILE = "similarity.json"
PROBLEM_KINDS = [  # (what the page calls it, words of the report's problem lines)
    ("ran past a cell's time limit", "ran past the time limit"),
    ("kernel died", "kernel died"),
    ("notebook refused by nbgrader", "nbgrader refused"),
    ("stopped by the time budget", "stopped: time budget"),
    ("suspicious answer flagged", "suspicious:"),
    ("memory limit reached", "memory: the student's processes"),
    ("grading failed", "grading failed"),
]


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _histogram(totals: list[float], maximum: float) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 2.8))
    ax.hist(totals, bins=min(20, max(5, int(maximum) or 5)), range=(0, maximum or 1), color="#4c72b0")
    ax.yaxis.get_major_locator().set_params(integer=True)  # (students come whole)
    ax.set_xlabel(f"points (of {maximum:g})")
    ax.set_ylabel("students")
    ax.set_title("Score distribution")
    return _png(figure)


def _full_marks_chart(shares: dict[str, float | None]) -> str:
    import matplotlib.pyplot as plt

    names = [n for n, share in shares.items() if share is not None]  # (cells of notebooks nobody handed in: none)
    figure, ax = plt.subplots(figsize=(6, 0.28 * len(names) + 0.8))
    ax.barh(names, [100 * shares[n] for n in names], color="#55a868")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of students who submitted the notebook with full marks")
    ax.tick_params(axis="y", labelsize=7)
    return _png(figure)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def write_index(out: Path, results: list[dict], maxima: dict[str, dict[str, float]], *,
                written: dict[str, tuple[float, int]] | None = None, pairs: list[dict] = (),
                warnings: list[str] = ()) -> Path:
    """`out/index.html` from the class's results (`StudentResult` as dicts), the points of every
    test cell (`maxima`: notebook -> grade id -> points), and where the gradebook has them, each
    student's written points and ungraded answers (`written`)."""
    written = written or {}
    total_max = sum(sum(cells.values()) for cells in maxima.values())
    totals = {r["student_id"]: sum(r["scores"].get(nb, 0.0) for nb in maxima) for r in results}
    shares, mistakes, problems = {}, collections.Counter(), collections.Counter()
    for nb, cells in maxima.items():
        submitted = [r for r in results if nb in r["scores"]]
        for grade_id in cells:
            key = f"{nb}/{grade_id}"
            shares[key] = (sum(key not in r["lost"] for r in submitted) / len(submitted)) if submitted else None
    for r in results:
        for key, name in r.get("mistakes", {}).items():
            mistakes[(key, name)] += 1
        for label, words in PROBLEM_KINDS:
            problems[label] += any(words in p for p in r["problems"])
    parts = ["<h1>Lab 4: the class at a glance</h1>"]
    parts += [f"<p class='warn'>{_e(w)}</p>" for w in warnings]
    mean = sum(totals.values()) / len(totals) if totals else 0.0
    median = sorted(totals.values())[len(totals) // 2] if totals else 0.0
    ungraded = sum(n for _, n in written.values())
    parts.append(f"<p>{len(results)} students; autograded points: mean {mean:.1f}, median {median:g} of "
                 f"{total_max:g}." + (f" Written answers still ungraded: <b>{ungraded}</b>." if written else "")
                 + "</p>")
    if results and any(v is not None for v in shares.values()):
        histogram = _histogram(list(totals.values()), total_max)
        parts.append(f"<img alt='histogram of the students&#x27; autograded points' src='{histogram}'>")
        parts.append("<h2>Full marks per test cell</h2>")
        parts.append(f"<img alt='share of full marks per test cell' src='{_full_marks_chart(shares)}'>")
    parts.append("<table><tr><th>test cell</th><th>points</th><th>full marks</th></tr>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{maxima[k.split('/')[0]][k.split('/', 1)[1]]:g}</td>"
        f"<td>{'no submission' if v is None else format(v, '.0%')}</td></tr>" for k, v in shares.items()) + "</table>")
    parts.append("<h2>Mistakes the hidden checks named</h2>")
    if mistakes:
        parts.append("<table><tr><th>test cell</th><th>mistake</th><th>students</th></tr>" + "".join(
            f"<tr><td>{_e(key)}</td><td>{_e(name)}</td><td class='n'>{n}</td></tr>"
            for (key, name), n in sorted(mistakes.items(), key=lambda kv: (-kv[1], kv[0]))) + "</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Grading problems</h2><table><tr><th>what</th><th>students</th></tr>" + "".join(
        f"<tr><td>{_e(label)}</td><td class='n'>{problems[label]}</td></tr>" for label, _ in PROBLEM_KINDS)
        + "</table>")
    parts.append("<h2>Similar submissions</h2><p>A hint to read both answers, never a score change "
                 "(docs/grading.md says what the share means).</p>")
    if pairs:
        parts.append("<table><tr><th>students</th><th>shared</th><th>side by side</th></tr>" + "".join(
            f"<tr><td>{_e(p['a'])} and {_e(p['b'])}</td><td>{max(p['share_a'], p['share_b']):.0%}</td>"
            f"<td><a href='{_e(p['page'])}'>compare</a></td></tr>" for p in pairs) + "</table>")
    else:
        parts.append("<p>No pair above the threshold.</p>")
    parts.append("<h2>Students</h2><table><tr><th>student</th><th>autograded</th>"
                 + ("<th>written</th><th>ungraded</th>" if written else "") + "<th>late</th><th>problems</th>"
                 "<th>feedback</th></tr>")
    for r in sorted(results, key=lambda r: r["student_id"]):
        sid = r["student_id"]
        pages = sorted(p.name for p in (out / "feedback" / sid).glob("*.html"))
        links = " ".join(f"<a href='feedback/{_e(sid)}/{_e(name)}'>{_e(name[:2])}</a>" for name in pages)
        points, waiting = written.get(sid, (0.0, 0))
        extra = f"<td class='n'>{points:g}</td><td class='n'>{waiting}</td>" if written else ""
        parts.append(f"<tr><td>{_e(sid)}</td><td class='n'>{totals[sid]:g}</td>{extra}"
                     f"<td>{'late' if r.get('late') else ''}</td><td class='n'>{len(r['problems'])}</td>"
                     f"<td>{links}</td></tr>")
    parts.append("</table>")
    style = ("body{font-family:sans-serif;margin:1.5em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}td.n{text-align:right}"
             ".warn{color:#a00;font-weight:bold}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Lab 4: the class</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")
    path = out / "index.html"
    path.write_text(with_csp(page), encoding="utf-8")
    return path


def refresh(out: Path, warnings: list[str] = ()) -> Path:
    """`out/index.html` again from what `out` holds: the saved results, the gradebook's written
    points (after manual grading), the similar pairs."""
    from . import course_folder, final_grades

    state = course_folder.saved_results(out)
    points = json.loads((out / "points.json").read_text()) if (out / "points.json").exists() else {}
    written = None
    if (out / "gradebook.db").exists():
        rows, _, _ = final_grades.final_grades(out)
        written = {r.student_id: (sum(r.written.values()), r.ungraded) for r in rows}
    pairs = json.loads((out / SIMILARITY_FILE).read_text()) if (out / SIMILARITY_FILE).exists() else []
    return write_index(out, list(state.values()), points, written=written, pairs=pairs, warnings=warnings)
