"""Similar submissions: a hint for the TA, never a score change.

Each student's answer cells (the code cells a student writes, in the lab's order) are
fingerprinted with copydetect (winnowing over a token stream in which names and literals
are replaced by placeholders, so renaming variables changes nothing), with the release's own
code as boilerplate (what every student was given is never evidence). A pair is listed when
the share of either student's fingerprints found in the other's reaches `THRESHOLD`.

A fingerprint that more than `COMMON_SHARE` of the class has (and at least `COMMON_MIN`
students) is taken as the exercise's natural answer, as the release's code is, and is no
evidence either (MOSS's `-m`: code in more than m submissions is ignored). Only pairs that
share a fingerprint are compared (an index from fingerprint to students): a class of 1,000 is
compared in seconds, not in the half a million comparisons of all pairs.
What the threshold means, and where it fails: docs/grading.md ("Similar submissions").
"""
from __future__ import annotations

import dataclasses
import html
import io
from pathlib import Path

import nbformat
import numpy as np

THRESHOLD = 0.6  # share of one student's answer fingerprints found in the other's
K, WINDOW = 30, 5  # copydetect's noise threshold and guarantee window (characters of the placeholder stream)
MIN_FINGERPRINTS = 8  # answers shorter than this (a blank lab, one line) are never compared
COMMON_SHARE, COMMON_MIN = 0.05, 10  # a fingerprint this many students have is the exercise's, not a copy


@dataclasses.dataclass
class Pair:
    a: str
    b: str
    share_a: float  # of a's fingerprints, the share found in b's
    share_b: float
    page: str = ""  # the side-by-side view, relative to OUT

    @property
    def score(self) -> float:
        return max(self.share_a, self.share_b)


def answer_code(notebooks: list[Path]) -> str:
    """The code of a student's answer cells (nbgrader solution code cells), notebook by notebook."""
    parts = []
    for path in sorted(notebooks):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
                parts.append(f"# {path.stem}/{meta.get('grade_id')}\n{cell.source}\n")
    return "\n".join(parts)


def _fingerprint(code: str, boilerplate=None):
    from copydetect import CodeFingerprint

    return CodeFingerprint("answer.py", K, WINDOW, boilerplate=boilerplate, language="python", fp=io.StringIO(code))


def similar_pairs(answers: dict[str, str], release_code: str, threshold: float = THRESHOLD) -> list[Pair]:
    """Pairs of students whose answers (`answers`: student id -> answer code) are alike, most alike first."""
    from copydetect import compare_files

    boilerplate = _boilerplate(release_code)
    prints = {sid: _fingerprint(code, boilerplate) for sid, code in sorted(answers.items())}
    holders: dict[int, int] = {}
    for fp in prints.values():
        for h in fp.hashes:
            holders[h] = holders.get(h, 0) + 1
    common = {h for h, n in holders.items() if n > max(COMMON_MIN, COMMON_SHARE * len(prints))}
    if common:  # fingerprinted again without them: the shares count only what is not everybody's
        boilerplate = np.union1d(boilerplate, np.array(sorted(common)))
        prints = {sid: _fingerprint(answers[sid], boilerplate) for sid in prints}
    prints = {sid: fp for sid, fp in prints.items() if len(fp.hashes) >= MIN_FINGERPRINTS}
    index: dict[int, list[str]] = {}
    for sid, fp in prints.items():
        for h in fp.hashes:
            index.setdefault(h, []).append(sid)
    shared: dict[tuple[str, str], int] = {}
    for students in index.values():
        for i, a in enumerate(students):
            for b in students[i + 1:]:
                shared[(a, b)] = shared.get((a, b), 0) + 1
    pairs = []
    for (a, b), count in shared.items():
        fewest = min(len(prints[a].hashes), len(prints[b].hashes))
        if count < threshold * fewest:  # neither share can reach the threshold
            continue
        _, (share_a, share_b), _ = compare_files(prints[a], prints[b])
        if max(share_a, share_b) >= threshold:
            pairs.append(Pair(a, b, round(float(share_a), 3), round(float(share_b), 3)))
    return sorted(pairs, key=lambda p: (-p.score, p.a, p.b))


def _boilerplate(release_code: str):
    return np.array(sorted(_fingerprint(release_code).hashes))


def side_by_side(pair: Pair, code_a: str, code_b: str, release_code: str) -> str:
    """A page with both answers, the matching parts marked (escaped text; no script)."""
    from copydetect import compare_files

    from .feedback import with_csp

    boilerplate = _boilerplate(release_code)
    fa, fb = _fingerprint(code_a, boilerplate), _fingerprint(code_b, boilerplate)
    _, _, (slices_a, slices_b) = compare_files(fa, fb)

    def marked(code: str, slices) -> str:
        spans = sorted(zip(slices[0].tolist(), slices[1].tolist())) if len(slices) and len(slices[0]) else []
        out, at = [], 0
        for start, end in spans:
            start = max(start, at)
            out.append(html.escape(code[at:start]) + "<mark>" + html.escape(code[start:end]) + "</mark>")
            at = max(at, end)
        return "".join(out) + html.escape(code[at:])

    style = ("body{font-family:sans-serif;margin:1em}table{width:100%;table-layout:fixed}td{vertical-align:top}"
             "pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:.5em}mark{background:#ffd54f}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>similar: {html.escape(pair.a)} and "
            f"{html.escape(pair.b)}</title><style>{style}</style></head><body>"
            f"<h1>{html.escape(pair.a)} and {html.escape(pair.b)}</h1>"
            f"<p>{pair.share_a:.0%} of {html.escape(pair.a)}'s answer fingerprints are in {html.escape(pair.b)}'s; "
            f"{pair.share_b:.0%} the other way. Marked: the matching parts (names and literals may differ). "
            "A hint to read both, not a verdict.</p>"
            f"<table><tr><th>{html.escape(pair.a)}</th><th>{html.escape(pair.b)}</th></tr><tr>"
            f"<td><pre>{marked(fa.raw_code, slices_a)}</pre></td><td><pre>{marked(fb.raw_code, slices_b)}</pre></td>"
            "</tr></table></body></html>\n")
    return with_csp(page)


def class_pairs(out: Path, release_dir: Path, threshold: float = THRESHOLD) -> list[Pair]:
    """The similar pairs of the class in `out` (its autograded notebooks), each with its
    side-by-side page written to `out/similarity/`."""
    import shutil

    release_code = "\n".join(cell.source for p in sorted(Path(release_dir).glob("*.ipynb"))
                             for cell in nbformat.read(p, as_version=4).cells if cell.cell_type == "code")
    answers = {folder.name: answer_code(list((folder / "lab4").glob("*.ipynb")))
               for folder in sorted((out / "autograded").iterdir()) if folder.is_dir()} \
        if (out / "autograded").is_dir() else {}
    pairs = similar_pairs(answers, release_code, threshold)
    pages = out / "similarity"
    shutil.rmtree(pages, ignore_errors=True)
    pages.mkdir()
    for i, pair in enumerate(pairs):
        pair.page = f"similarity/pair-{i + 1:04d}.html"
        (out / pair.page).write_text(side_by_side(pair, answers[pair.a], answers[pair.b], release_code),
                                     encoding="utf-8")
    return pairs
