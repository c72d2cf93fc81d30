"""What students hand in, made gradable.

Two layouts are read: nbgrader's (`<student_id>/lab4/*.ipynb`, or `<student_id>/*.ipynb`)
and a folder of files as a learning-management system exports them: zips, or loose notebooks
(students who uploaded files instead of a zip). Canvas's names (`lms.canvas_name`) give the
student, their Canvas id and the late flag; other names give the student id by
`DEFAULT_ID_PATTERN`: everything before the first `_` or `.` (never at a hyphen: `smith-jones`
is one name), so `jdoe.zip` and `jdoe_lab4.zip` give `jdoe`. Pass another regular expression
with a `student` group for other exports. Several submissions of one student (a resubmission
beside the first): the newest is graded, by the LMS's own order (Canvas's submission ids) or
else the files' times, and the others are reported.

Each submission is normalised before nbgrader sees it: notebooks are matched to the
release's file names (a renamed copy such as `02_synthetic (1).ipynb` is recognised by its
number), outputs are dropped (nbgrader executes afresh), and deleted test cells are put back
(nbgrader restores *edited* test cells from the gradebook, but not deleted ones). Each such
step is recorded as a problem for the TA's report.

Names are hostile too: a student id becomes a folder name and an nbgrader argument, so it is
normalised to letters, digits and `_ . @ + -` (the mapping goes to the report); a file name
that gives no id, or two different names that give the same safe id, are reported and not
graded, and the rest of the class is.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import nbformat

from .lms import LmsName, canvas_name
from .safe_text import printable
from .sandbox import KERNELSPEC

DEFAULT_ID_PATTERN = r"^(?P<student>[^_.]+)"
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
    canvas_id: str = ""  # from Canvas's file names
    late: bool = False  # Canvas's LATE marker on the graded files

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
    groups = _group_by_id({name: (raw, "") for name, raw in raw_ids.items()}, report)
    return {sources[0]: sid for sid, sources in groups.items() if len(sources) == 1}


def _group_by_id(identities: dict[str, tuple[str, str]], report: list[str]) -> dict[str, list[str]]:
    """safe id -> the source names that are one student's, from each source's (raw id, LMS id).

    Sources of one raw id and LMS id are one student's (a resubmission); one raw id with several
    LMS ids is several students of one name, told apart by the LMS id; different raw ids that give
    one safe id are ambiguous, reported and not graded."""
    safe: dict[str, dict[tuple[str, str], list[str]]] = {}
    for source, (raw, lms_id) in identities.items():
        sid = safe_student_id(raw) if raw else None
        if sid is None:
            report.append(f"{printable(repr(source))}: no usable student id in its name; not graded")
            continue
        if sid != raw:
            report.append(f"{printable(repr(source))}: student id {printable(repr(raw))} graded as {sid!r}")
        safe.setdefault(sid, {}).setdefault((raw, lms_id), []).append(source)
    ids: dict[str, list[str]] = {}
    for sid, people in safe.items():
        if len({raw for raw, _ in people}) > 1:
            names = ", ".join(printable(repr(s)) for s in sorted(s for sources in people.values() for s in sources))
            report.append(f"{names} all give student id {sid!r}; none graded (rename them or pass --id-pattern)")
            continue
        for (raw, lms_id), sources in people.items():
            own = sid if len(people) == 1 else f"{sid}_{lms_id}"
            if own != sid:
                report.append(f"two students named {sid!r} in the LMS's file names: the one with id {lms_id} "
                              f"is graded as {own!r}")
            ids[own] = sorted(sources)
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


@dataclasses.dataclass
class _File:
    """A file of an LMS's export: its path, what its name says, and its place in the LMS's order."""

    path: Path
    raw_id: str
    lms: LmsName | None

    @property
    def order(self) -> tuple:  # newer sorts later: Canvas's submission id, then the file's time
        return (self.lms.submission if self.lms else 0, self.path.stat().st_mtime_ns, self.path.name)

    @property
    def uploaded_name(self) -> str:
        return self.lms.filename if self.lms else self.path.name


def _lms_file(path: Path, id_pattern: str) -> _File:
    lms = canvas_name(path.name)
    if lms is not None and id_pattern == DEFAULT_ID_PATTERN:
        return _File(path, lms.student, lms)
    try:
        return _File(path, student_id_from_filename(path.name, id_pattern), lms)
    except ValueError:
        return _File(path, "", lms)


def _read_loose(files: list[_File], expected: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """Loose notebooks of one student: per notebook of the lab the newest file, within the caps."""
    newest: dict[str, _File] = {}
    problems, found, total = [], {}, 0
    numbers = _lab_numbers(expected)
    for f in sorted(files, key=lambda f: f.order):
        number = _number(f.uploaded_name)
        if number not in numbers:
            problems.append(f"{printable(f.path.name)} is not one of the lab's notebooks; ignored")
            continue
        if number in newest:
            problems.append(f"{printable(newest[number].path.name)}: an older upload of the same notebook; "
                            f"{printable(f.path.name)} graded instead")
        newest[number] = f
    for number, f in sorted(newest.items()):
        size = f.path.stat().st_size
        if f.path.is_symlink() or size > MAX_NOTEBOOK_BYTES or total + size > MAX_SUBMISSION_BYTES:
            problems.append(f"{printable(f.path.name)}: over the caps of a submission; not graded")
            continue
        total += size
        found[f.uploaded_name] = f.path.read_bytes()
    return found, problems


def _read_lms_export(path: Path, expected: list[str], id_pattern: str,
                     report: list[str]) -> dict[str, tuple[dict[str, bytes], list[str], _File]]:
    """student id -> (files, problems, the newest file) from a folder of zips and loose notebooks."""
    files = {p.name: _lms_file(p, id_pattern) for p in sorted(path.iterdir())
             if p.is_file() and not p.is_symlink() and p.suffix.lower() in (".zip", ".ipynb")}
    groups = _group_by_id({name: (f.raw_id, f.lms.canvas_id if f.lms else "") for name, f in files.items()}, report)
    raw = {}
    for sid, names in groups.items():
        mine = [files[n] for n in names]
        loose = [f for f in mine if f.path.suffix.lower() == ".ipynb"]
        # the candidates: each zip on its own, all loose notebooks together (as of their newest)
        candidates = [[f] for f in mine if f.path.suffix.lower() == ".zip"] + ([loose] if loose else [])
        candidates.sort(key=lambda group: max(f.order for f in group))
        chosen, older = candidates[-1], [f for group in candidates[:-1] for f in group]
        newest = max(chosen, key=lambda f: f.order)
        if chosen[0].path.suffix.lower() == ".zip":
            found, problems = _read_zip(chosen[0].path, expected)
        else:
            found, problems = _read_loose(chosen, expected)
        if older:
            how = "Canvas's submission ids" if newest.lms else "the files' times"
            problems.insert(0, f"{len(older)} older submission(s) not graded "
                               f"({', '.join(printable(f.path.name, 80) for f in older)}); the newest by {how}, "
                               f"{printable(newest.path.name, 80)}, was")
        raw[sid] = (found, problems, newest)
    return raw


def read_submissions(path: str | Path, release_dir: str | Path, *, assignment: str = "lab4",
                     id_pattern: str = DEFAULT_ID_PATTERN, report: list[str] | None = None) -> list[Submission]:
    """Every student's submission under `path` (an LMS's zips and loose notebooks, or one folder
    per student).

    Names that give no safe, unique student id are skipped and described in `report`."""
    path, release_dir = Path(path), Path(release_dir)
    report = [] if report is None else report
    if not path.is_dir():
        raise FileNotFoundError(f"no submissions folder {path}")
    releases = {p.name: nbformat.read(p, as_version=4) for p in sorted(release_dir.glob("*.ipynb"))}
    expected = list(releases)
    raw: dict[str, tuple[dict[str, bytes], list[str], _File | None]] = {}
    if any(p.is_file() and p.suffix.lower() in (".zip", ".ipynb") for p in path.iterdir()):
        raw = _read_lms_export(path, expected, id_pattern, report)
    else:
        folders = {p.name: p for p in sorted(path.iterdir())
                   if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")}
        for name, sid in _collect_ids({n: n for n in folders}, report).items():
            raw[sid] = (*_read_folder(folders[name], assignment), None)
    submissions = []
    for sid, (files, problems, newest) in sorted(raw.items()):
        matched, name_problems = match_names(files, expected)
        notebooks = {}
        problems = problems + name_problems
        for name, data in matched.items():
            text, found = prepare_notebook(data, releases[name], name)
            problems += found
            if text is not None:
                notebooks[name] = text
        lms = newest.lms if newest else None
        submissions.append(Submission(sid, notebooks, problems, lms.canvas_id if lms else "",
                                      bool(lms and lms.late)))
    return submissions
