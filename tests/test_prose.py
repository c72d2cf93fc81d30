"""A number in the prose is a number the run printed (CONVENTIONS.md): the notebooks' markdown states
settings and quotes papers; what a run measured, and the words that interpret it ("two thirds",
"in the same time"), come from a cell. This guard reads every markdown cell of the solutions.

A measured-looking number (a percentage, a decimal, points, "N of M", a duration, a fraction in
words) is allowed only
- as a setting: an exercise's points, a size such as 8×8, the run-time table of the header (whose
  numbers tests/test_run_times.py holds against measured runs);
- quoted from the literature, with its reference in the same paragraph;
- or in ALLOWED below, each with the reason it is not a measurement of this run.
"""
import json
import re
from pathlib import Path

import pytest

from course_utils.phrasing import fraction_words, gain_words, paired_verdict, paired_words, share, time_ratio_words

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions" / "lab4").glob("*.ipynb"))

MEASURED = re.compile(
    r"(?<![\w.])(?:\d+(?:\.\d+)?\s?%|[+−-]?\d+(?:\.\d+)?(?: to [+−-]?\d+(?:\.\d+)?)?\s?points?\b|\d*\.\d{2,}"
    r"|\d+(?:\.\d+)?\s?±|±\s?\d+(?:\.\d+)?(?![\d°.])|\d+ of (?:the )?\d+|\d+(?:\.\d+)?\s?(?:s|min|seconds|minutes)\b"
    r"|\d+(?:\.\d+)?\s?×(?!\s?\d)|two thirds|a third|three quarters|a quarter|half of the|in the same time"
    r"|a fifth|one in (?:two|three|four|five|six|seven|eight|ten)|more often than not)")
# a setting: an exercise's points "(2 points", a size "8×8", "3 × 3"
SETTING = re.compile(r"\(\d+ points?|\d+\s?×\s?\d+")
CITATION = re.compile(r"(?:et al\.?|[A-Z][a-z]+(?:,? (?:&|and) [A-Z][a-z]+)+),? \(?(?:19|20)\d\d|\((?:19|20)\d\d\)"
                      r"|(?:19|20)\d\d\)|lecture 11|[Tt]he lecture quotes")
HEADER_ROW = re.compile(r"^\| `(quick|full|grade)`", re.M)

ALLOWED = {  # (notebook prefix, text) -> why it is not a measurement of this run
    ("04", "Chance is 25%"): "chance level of four rotations, by definition",
    ("05", "Chance is 1 in 8\n(12.5%)"): "chance level of eight positions, by definition",
    ("01", "65 to 85% of its size"): "a setting: the range of scales of the pool's shrunken digits",
    ("01", "90% confidence, 90% are right"): "the definition of calibration, as an example",
    ("01", "(80.9% on ImageNet)"): "torchvision's documented accuracy of IMAGENET1K_V2 (its model table)",
    ("01", "100% for it by construction"): "true by construction, not measured",
    ("01", "scores 0% on its filtered\n   set by construction"): "true by construction, not measured",
    ("01", "0% on the filtered set is there by construction"): "true by construction, not measured",
    ("02", "(a third)"): "one channel of three, a count of free values",
    ("02", "random ±1 direction"): "the direction's entries, a setting",
    ("06", "**do flip** half of the images"): "flip_p=0.5, a setting",
    ("06", "flip half of the images"): "flip_p=0.5, a setting",
}


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def findings(notebook: Path) -> list[str]:
    """Every measured-looking number of the notebook's markdown that no rule covers."""
    prefix = notebook.name[:2]
    allowed = [re.sub(r"\s+", " ", text) for (nb, text) in ALLOWED if nb == prefix]
    found = []
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        for raw in paragraphs(source):
            paragraph = re.sub(r"\s+", " ", raw)
            if HEADER_ROW.search(raw) or CITATION.search(paragraph):
                continue
            covered = [m.span() for m in SETTING.finditer(paragraph)]
            for text in allowed:
                start = paragraph.find(text)
                while start >= 0:
                    covered.append((start, start + len(text)))
                    start = paragraph.find(text, start + 1)
            for match in MEASURED.finditer(paragraph):
                if any(a <= match.start() and match.end() <= b for a, b in covered):
                    continue
                context = paragraph[max(0, match.start() - 40):match.end() + 40].replace("\n", " ")
                found.append(f"{notebook.name} cell {index}: {match.group(0)!r} in ...{context}...")
    return found


@pytest.mark.parametrize("notebook", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_markdown_states_no_number_the_run_did_not_print(notebook):
    found = findings(notebook)
    assert not found, "measured-looking numbers in markdown (print them from a cell instead):\n" + "\n".join(found)


def test_every_allowed_text_is_still_there():
    """An entry of ALLOWED that no notebook holds any more is stale: it would cover a new sentence."""
    texts = {p.name[:2]: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"]
                                   if c["cell_type"] == "markdown") for p in SOLUTIONS}
    stale = [key for key in ALLOWED if re.sub(r"\s+", " ", key[1]) not in re.sub(r"\s+", " ", texts.get(key[0], ""))]
    assert not stale, stale


def test_the_guard_catches_what_the_issue_found(tmp_path):
    """The sentences that contradicted their run (issue 35) are caught; settings and quotes are not."""
    cells = ["About two thirds of the stickers fooled it.", "FGSM training reaches about 78% and 74% on PGD.",
             "Patches are cheap, so this task trains for more steps in the same time.",
             "Rotation gains +3 to +4 points.", "Random init reaches 66.5%.",
             "## Exercise 1 (2 points): FGSM", "Images of 8×8 pixels.",
             "ResNet-50 reaches 3% on ImageNet-A (Hendrycks et al. 2021)."]
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": c} for c in cells]}))
    flagged = {int(f.split("cell ")[1].split(":")[0]) for f in findings(path)}
    assert flagged == {0, 1, 2, 3, 4}, findings(path)


@pytest.mark.parametrize("fraction, words", [(0.0, "none"), (26 / 48, "just over half"), (0.66, "about two thirds"),
                                             (0.75, "about three quarters"), (0.99, "almost all"), (1.0, "all"),
                                             (0.2, "about a fifth"), (0.25, "about a quarter"), (0.1, "few"), (0.03, "almost none")])
def test_fraction_words_follow_the_value(fraction, words):
    assert fraction_words(fraction) == words


def test_sentences_are_built_from_the_values():
    assert share(26, 48) == "26 of 48 (54%, just over half)"
    assert time_ratio_words(123, 61) == "in 2.0x the time (123 s vs 61 s)"
    assert time_ratio_words(63, 61).startswith("in about the same time")
    assert gain_words(0.025, 0.011) == "+2.5 points, beyond the spread of 1.1 points"
    assert "no measurable difference" in gain_words(0.004, 0.011)
    with pytest.raises(ValueError):
        fraction_words(1.5)


def test_paired_differences_are_read_by_their_signs_not_their_mean():
    assert paired_words([0.05, 0.03, 0.07]) == "+5.0 ± 2.0 points, above zero on 3 of 3 seeds"
    assert paired_words([0.1, -0.01], "draws").endswith("above zero on 1 of 2 draws")
    assert paired_verdict([0.05, 0.03, 0.07]) == "higher"
    assert paired_verdict([-0.2, -0.01]) == "lower"
    # a large mean carried by one run is no consistent difference
    assert paired_verdict([0.30, -0.01, 0.02]) == "not consistently different"
    assert paired_verdict([0.0, 0.1]) == "not consistently different"


# --- the headers' run times ------------------------------------------------------------------------

def _seconds(text: str) -> float | None:
    """The first duration in `text`: "40 s" -> 40, "2¼ min" -> 135, "about 2 min" -> 120."""
    match = re.search(r"(\d+)(¼|½|¾)?\s?(s|min)\b", text)
    if not match:
        return None
    value = int(match.group(1)) + {"¼": 0.25, "½": 0.5, "¾": 0.75, None: 0}[match.group(2)]
    return value * (60 if match.group(3) == "min" else 1)


def measured_quick_seconds() -> dict[str, float]:
    """README's table of notebooks: the measured quick-profile time of each (its header says where)."""
    readme = (ROOT / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| # | notebook |"))
    assert "quick (2-core CPU" in header and "measured" in header, header
    column = header.strip("|").split("|").index(next(c for c in header.strip("|").split("|") if "quick" in c))
    rows = [line.strip("|").split("|") for line in readme.splitlines() if re.match(r"\| 0\d \|", line)]
    return {row[0].strip(): _seconds(row[column]) for row in rows}


@pytest.mark.parametrize("notebook", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_the_headers_quick_run_time_is_the_measured_one_and_says_on_what(notebook):
    measured = measured_quick_seconds()[notebook.name[:2]]
    intro = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    row = next(line for line in intro.splitlines() if line.startswith("| `quick`"))
    stated = _seconds(row.strip().strip("|").split("|")[-1])
    assert "2-core" in row, f"{notebook.name}: the quick run time must say on what it was measured: {row}"
    assert stated is not None, f"{notebook.name}: no run time in {row}"
    assert measured / 1.6 <= stated <= measured * 1.6, \
        f"{notebook.name}: the header says {stated:.0f} s, README's measured table {measured:.0f} s"
