"""Submissions for the grading tests, made from the solution notebooks."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lab4"
RELEASE = ROOT / "labs" / "lab4"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def replace_solution(nb: dict, grade_id: str, source: str) -> dict:
    """A copy of `nb` whose answer cell `grade_id` holds `source`."""
    nb = json.loads(json.dumps(nb))
    cells = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    assert cells, f"no cell {grade_id}"
    cells[0]["source"] = source
    return nb


def write_student(folder: Path, student: str, notebooks: dict[str, dict | str | bytes]) -> Path:
    """nbgrader's layout: folder/<student>/lab4/<name>."""
    target = folder / student / "lab4"
    target.mkdir(parents=True, exist_ok=True)
    for name, content in notebooks.items():
        data = content if isinstance(content, (str, bytes)) else json.dumps(content)
        (target / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return target


def write_zip(folder: Path, filename: str, notebooks: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as zf:
        for name, nb in notebooks.items():
            zf.writestr(f"lab4/{name}", json.dumps(nb))
    return path


def solved(name: str) -> dict:
    """The release notebook `name` with every answer cell filled in from the solutions:
    what a student who got everything right hands in (test cells as released)."""
    release, solution = load(RELEASE / name), load(SOLUTIONS / name)
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    for cell in release["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and grade_id in answers:
            source = answers[grade_id]
            source = source if isinstance(source, str) else "".join(source)
            # nbgrader's markers stay out of what a student hands in
            cell["source"] = "\n".join(l for l in source.splitlines() if "### BEGIN SOLUTION" not in l
                                       and "### END SOLUTION" not in l)
    return release


def release_names() -> list[str]:
    return sorted(p.name for p in RELEASE.glob("*.ipynb"))


# One typical wrong answer per graded function (the mistakes the notebook issues name):
# (notebook, answer cell grade_id, wrong source). The test cell is "<grade_id>_tests".
WRONG_ANSWERS = [
    ("00_getting_started.ipynb", "batch_accuracy",
     "def batch_accuracy(logits, labels):\n    return float((logits.argmax(1) == labels).sum())\n"),
    ("01_natural_adversarial_examples.ipynb", "subset_predictions",  # a 1000-way argmax
     "def subset_predictions(logits_1k, indices_in_1k):\n    return logits_1k.argmax(dim=1)\n"),
    ("01_natural_adversarial_examples.ipynb", "rms_calibration_error",  # bins not weighted by size
     "import math\n"
     "def rms_calibration_error(confidence, correct, bin_size=100):\n"
     "    order = torch.argsort(confidence)\n"
     "    conf, right = confidence[order].double(), correct[order].double()\n"
     "    n_bins = max(1, len(conf) // bin_size)\n"
     "    gaps = []\n"
     "    for b in range(n_bins):\n"
     "        stop = len(conf) if b == n_bins - 1 else (b + 1) * bin_size\n"
     "        gaps.append((conf[b * bin_size:stop].mean() - right[b * bin_size:stop].mean()).item() ** 2)\n"
     "    return math.sqrt(sum(gaps) / len(gaps))\n"),
]


def with_wrong_answer(notebook: str, grade_id: str, source: str) -> dict:
    """The solved notebook with one answer replaced by a typical mistake."""
    return replace_solution(solved(notebook), grade_id, source)
