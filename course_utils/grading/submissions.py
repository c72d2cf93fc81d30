"""What students hand in, made gradable.

Two layouts are read: nbgrader's (`<student_id>/lab4/*.ipynb`, or `<student_id>/*.ipynb`)
and a folder of zip files as a learning-management system exports them. A zip's student id
is taken from its file name by `DEFAULT_ID_PATTERN`: everything before the first `_`, `-`
or `.`, so `jdoe.zip`, `jdoe_lab4.zip` and Canvas's `doejohn_12345_67890_lab4.zip` give
`jdoe`, `jdoe` and `doejohn`. Pass another regular expression with a `student` group
for other exports.

Each submission is normalised before nbgrader sees it: notebooks are matched to the
release's file names (a renamed copy such as `02_synthetic (1).ipynb` is recognised by its
number), outputs are dropped (nbgrader executes afresh), and deleted test cells are put back
(nbgrader restores *edited* test cells from the gradebook, but not deleted ones). Each such
step is recorded as a problem for the TA's report.

Names are hostile too: a student id becomes a folder name and an nbgrader argument, so it is
normalised to letters, digits and `_ . @ + -` (the mapping goes to the report); a file name
that gives no id, or two names that give the same id, are reported and not graded, and the
rest of the class is.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import nbformat

from .safe_text import printable
from .sandbox import KERNELSPEC

DEFAULT_ID_PATTERN = r"^(?P<student>[^_.\-]+)"
# What is read of a submission, whatever its files say about themselves (a zip's sizes are
# declarations: the reading is capped as well). A notebook with its saved outputs is a few MB;
# the outputs are dropped before grading.
MAX_NOTEBOOK_BYTES = 20 * 2**20  # one notebook (a zip member or a file)
MAX_SUBMISSION_BYTES = 100 * 2**20  # all of one student's notebooks together
MAX_ZIP_FILE_BYTES = 200 * 2**20  # a zip file as it lies on disk (its directory is read whole)
MAX_RATIO = 100  # uncompressed / compressed, per member: a zip bomb's is in the thousands
SKIP_PARTS = {"__MACOSX", ".ipynb_checkpoints"}


@dataclasses.dataclass
class Submission:
    """One student's notebooks (expected file name -> notebook JSON text) and what was off."""

    student_id: str
    notebooks: dict[str, str]
    problems: list[str]

    @property
    def digest(self) -> str:
        """A hash of what will be graded: unchanged submissions are not graded again."""
        h = hashlib.sha256()
        for name in sorted(self.notebooks):
            h.update(name.encode() + b"\0" + self.notebooks[name].encode() + b"\0")
        return h.hexdigest()


def student_id_from_filename(filename: str, pattern: str = DEFAULT_ID_PATTERN) -> str:
    match = re.search(pattern, Path(filename).name)
    if not match or not match.groupdict().get("student"):
        raise ValueError(f"cannot read a student id from {filename!r} with pattern {pattern!r} "
                         "(it needs a named group 'student')")
    return match.group("student")


def safe_student_id(raw: str) -> str | None:
    """`raw` as a folder name and command-line argument: unsafe characters become `_`; None
    if nothing is left (`..`, `-`, spaces only)."""
    text = re.sub(r"[^A-Za-z0-9_.@+-]", "_", raw.strip())[:64]
    text = re.sub(r"_+", "_", text).strip("._-+@")
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*", text) and ".." not in text else None


def _collect_ids(raw_ids: dict[str, str], report: list[str]) -> dict[str, str]:
    """source name -> safe id, for the names that give one id each; the rest reported."""
    safe: dict[str, list[str]] = {}
    for source, raw in raw_ids.items():
        sid = safe_student_id(raw) if raw else None
        if sid is None:
            report.append(f"{printable(repr(source))}: no usable student id in its name; not graded")
            continue
        if sid != raw:
            report.append(f"{printable(repr(source))}: student id {printable(repr(raw))} graded as {sid!r}")
        safe.setdefault(sid, []).append(source)
    ids = {}
    for sid, sources in safe.items():
        if len(sources) > 1:
            names = ", ".join(printable(repr(s)) for s in sorted(sources))
            report.append(f"{names} all give student id {sid!r}; none graded "
                          "(rename them or pass --id-pattern)")
        else:
            ids[sources[0]] = sid
    return ids


def _wanted(path: str) -> bool:
    parts = Path(path).parts
    return path.endswith(".ipynb") and not any(p in SKIP_PARTS or p.startswith(".") for p in parts)


def _lab_numbers(expected: list[str]) -> set[str]:
    return {n for n in map(_number, expected) if n}


def _read_zip(path: Path, expected: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """The lab's notebooks in a zip (by name, or a renamed copy with a notebook's number), read by
    name and never extracted, within the caps; a zip over them is reported and nothing of it read."""
    files, problems = {}, []
    numbers = _lab_numbers(expected)
    try:
        size = path.stat().st_size
        if size > MAX_ZIP_FILE_BYTES:
            return {}, [f"{printable(path.name)}: {size / 2**20:.0f} MB, over the {MAX_ZIP_FILE_BYTES / 2**20:.0f} MB "
                        "a submission's zip may take; not graded"]
        with zipfile.ZipFile(path) as zf:
            members, ignored = [], []
            for info in zf.infolist():
                name = Path(info.filename).name
                if info.is_dir():
                    continue
                if not _wanted(info.filename) or _number(name) not in numbers:
                    ignored.append(info.filename)
                    continue
                members.append(info)
            if ignored:
                shown = ", ".join(printable(n, 80) for n in ignored[:5]) + (f" and {len(ignored) - 5} more"
                                                                           if len(ignored) > 5 else "")
                problems.append(f"{printable(path.name)}: {len(ignored)} file(s) that are not the lab's notebooks "
                                f"ignored ({shown})")
            declared = sum(info.file_size for info in members)
            bombs = [info for info in members if info.file_size > MAX_RATIO * max(info.compress_size, 1)
                     and info.file_size > 2**20]
            if declared > MAX_SUBMISSION_BYTES or bombs or any(i.file_size > MAX_NOTEBOOK_BYTES for i in members):
                ratio = bombs[0].file_size // max(bombs[0].compress_size, 1) if bombs else 0
                why = (f"{printable(bombs[0].filename, 80)} expands {ratio} times (more than {MAX_RATIO})" if bombs else
                       f"its notebooks hold {declared / 2**20:.0f} MB (at most {MAX_NOTEBOOK_BYTES / 2**20:.0f} MB "
                       f"each and {MAX_SUBMISSION_BYTES / 2**20:.0f} MB together)")
                return {}, problems + [f"{printable(path.name)}: over the caps of a submission: {why}; not graded"]
            for info in members:
                # read by name, never extracted (no path in the archive reaches the disk), and never more
                # than the cap, whatever the member's header declares
                with zf.open(info) as member:
                    data = member.read(MAX_NOTEBOOK_BYTES + 1)
                if len(data) > MAX_NOTEBOOK_BYTES:
                    return {}, problems + [f"{printable(path.name)}: {printable(info.filename, 80)} is larger than "
                                           "it says; not graded"]
                files[Path(info.filename).name] = data
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        problems.append(f"{printable(path.name)} is not a readable zip file ({printable(type(err).__name__)}: "
                        f"{printable(str(err), 120)})")
        return {}, problems
    return files, problems


def _read_folder(folder: Path, assignment: str) -> tuple[dict[str, bytes], list[str]]:
    root = folder / assignment if (folder / assignment).is_dir() else folder
    files, problems, total = {}, [], 0
    for p in sorted(root.rglob("*.ipynb")):
        if p.is_symlink() or not p.is_file():  # a link could point at another student's files
            continue
        size = p.stat().st_size
        if not _wanted(str(p.relative_to(root))):
            continue
        if size > MAX_NOTEBOOK_BYTES or total + size > MAX_SUBMISSION_BYTES:
            problems.append(f"{printable(p.name)}: {size / 2**20:.0f} MB, over the caps of a submission; not graded")
            continue
        total += size
        files[p.name] = p.read_bytes()
    return files, problems


def _number(name: str) -> str | None:
    m = re.match(r"\s*(\d{2})", name)
    return m.group(1) if m else None


def match_names(found: dict[str, bytes], expected: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """Map found files to expected names: exact names first, then a unique file with the
    same two-digit number (`04_rotation (1).ipynb` -> `04_rotation.ipynb`)."""
    matched, problems = {}, []
    left = dict(found)
    for name in expected:
        if name in left:
            matched[name] = left.pop(name)
    for name in expected:
        if name in matched:
            continue
        candidates = [f for f in left if _number(f) == _number(name)]
        if len(candidates) == 1:
            matched[name] = left.pop(candidates[0])
            problems.append(f"{printable(candidates[0])} was graded as {name} (misnamed file)")
        elif len(candidates) > 1:
            problems.append(f"{name} is missing, and {', '.join(printable(c) for c in sorted(candidates))} could each "
                            "be it; none graded")
        else:
            problems.append(f"{name} is missing")
    for extra in sorted(left):
        problems.append(f"{printable(extra)} is not part of the lab; ignored")
    return matched, problems


def _grade_cells(nb) -> list:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]


def prepare_notebook(raw: bytes, release_nb, name: str) -> tuple[str | None, list[str]]:
    """The notebook to grade as JSON text (None if unreadable), and the problems found.

    Drops outputs; restores deleted test cells from the release at their original place;
    notes edited test cells (nbgrader itself replaces them by the gradebook's version).
    """
    problems = []
    try:
        nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cell list")
    except Exception as err:  # nbformat raises several types for broken JSON and schemas
        return None, [f"{name} is not a valid notebook ({type(err).__name__}: {str(err)[:120]}); scored 0"]
    output_bytes = sum(len(str(c.get("outputs", ""))) for c in nb.cells if c.get("cell_type") == "code")
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    if output_bytes > 2**20:
        problems.append(f"{name}: {output_bytes / 2**20:.0f} MB of saved outputs dropped before grading")
    release_cells = [c for c in release_nb.cells if "nbgrader" in c.metadata]
    present = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(nb.cells)
               if "nbgrader" in c.metadata}
    for k, cell in enumerate(release_cells):
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if not (cell.metadata["nbgrader"].get("grade") and cell.cell_type == "code"):
            continue
        if grade_id in present:
            found = nb.cells[present[grade_id]]
            if found.cell_type != cell.cell_type or found.metadata.get("nbgrader") != cell.metadata["nbgrader"]:
                # nbgrader would refuse the whole notebook; the release's cell is the one to grade
                nb.cells[present[grade_id]] = copy.deepcopy(cell)
                problems.append(f"{name}: test cell {grade_id} was turned into a {found.cell_type} cell or its "
                                "grading metadata was changed; restored from the release and graded")
            elif found.source.strip() != cell.source.strip():
                problems.append(f"{name}: test cell {grade_id} was edited; graded with the original")
            continue
        # insert after the nearest earlier nbgrader cell that is still there
        anchor = next((present[c.metadata["nbgrader"]["grade_id"]] for c in reversed(release_cells[:k])
                       if c.metadata["nbgrader"]["grade_id"] in present), -1)
        nb.cells.insert(anchor + 1, copy.deepcopy(cell))
        present = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(nb.cells)
                   if "nbgrader" in c.metadata}
        problems.append(f"{name}: test cell {grade_id} was deleted; restored and graded")
    for cell in nb.cells:
        cell.pop("id", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)  # nbgrader starts the sandboxed kernel whatever this said
    nb.nbformat_minor = 4  # cell ids dropped, so no duplicate or malformed ids reach nbgrader
    return nbformat.writes(nb), problems


def read_submissions(path: str | Path, release_dir: str | Path, *, assignment: str = "lab4",
                     id_pattern: str = DEFAULT_ID_PATTERN, report: list[str] | None = None) -> list[Submission]:
    """Every student's submission under `path` (zip files, or one folder per student).

    Names that give no safe, unique student id are skipped and described in `report`."""
    path, release_dir = Path(path), Path(release_dir)
    report = [] if report is None else report
    if not path.is_dir():
        raise FileNotFoundError(f"no submissions folder {path}")
    releases = {p.name: nbformat.read(p, as_version=4) for p in sorted(release_dir.glob("*.ipynb"))}
    expected = list(releases)
    raw: dict[str, tuple[dict[str, bytes], list[str]]] = {}
    zips = sorted(p for p in path.glob("*.zip") if p.is_file())
    if zips:
        raw_ids = {}
        for z in zips:
            try:
                raw_ids[z.name] = student_id_from_filename(z.name, id_pattern)
            except ValueError:
                raw_ids[z.name] = ""
        for name, sid in _collect_ids(raw_ids, report).items():
            raw[sid] = _read_zip(path / name, expected)
    else:
        folders = {p.name: p for p in sorted(path.iterdir())
                   if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")}
        for name, sid in _collect_ids({n: n for n in folders}, report).items():
            raw[sid] = _read_folder(folders[name], assignment)
    submissions = []
    for sid, (files, problems) in sorted(raw.items()):
        matched, name_problems = match_names(files, expected)
        notebooks = {}
        problems = problems + name_problems
        for name, data in matched.items():
            text, found = prepare_notebook(data, releases[name], name)
            problems += found
            if text is not None:
                notebooks[name] = text
        submissions.append(Submission(sid, notebooks, problems))
    return submissions
