"""One nbgrader command for one student, with that student's trusted checker beside it.

`python -m course_utils.grading.nbgrader_run --checks CHECKS.json --verdicts OUT.json -- ARGS`
runs `nbgrader ARGS` in this process (outside the sandbox: nbgrader never runs student code,
it only talks to the sandboxed kernel) and, in a thread, the `CheckServer` that the kernel's
hidden-check stubs connect to. nbgrader's cell loop tells the server which cell is running,
so a check counts only inside its own test cell. The verdicts are written to OUT.json, a
file the kernel cannot reach. (Importing this package first keeps jsonschema's IRI parser out,
see `course_utils/grading/__init__.py`.) A local grading worker runs `main` in a fork of itself
(`forked.py`) rather than as this command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .sandbox import SPEC_ENV, SandboxSpec


OUTPUT_CELL_BYTES = 2**20  # what nbgrader keeps of one cell's outputs (the rest: a note saying so)
OUTPUT_NOTEBOOK_BYTES = 10 * 2**20  # and of one notebook's
TRUNCATED = "\n[course-lab] output truncated: this cell's outputs went past {limit}; the rest was not kept\n"
TOO_LARGE = ("\n[course-lab] output truncated: one of this cell's outputs was larger than the grader takes at once "
             "(16 MB); it was not kept\n")
LATE = ("\n[course-lab] output truncated: this cell's outputs were still arriving after it finished; the rest was "
        "not kept\n")


def _amount(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


def _size(msg: dict) -> int:
    """Roughly the bytes a kernel message adds to the notebook (its text and data, its buffers)."""
    content = msg.get("content") or {}
    size = sum(len(str(content.get(key, ""))) for key in ("text", "data", "traceback"))
    size += sum(len(b) for b in msg.get("buffers") or [])
    return size + len(str(content.get("state", ""))) if msg.get("msg_type", "").startswith("comm") else size


def _limit_outputs(cell_bytes: int = OUTPUT_CELL_BYTES, notebook_bytes: int = OUTPUT_NOTEBOOK_BYTES) -> None:
    """Keep at most `cell_bytes` of a cell's outputs and `notebook_bytes` of a notebook's while
    nbclient executes it: a cell that prints 300 MB leaves a note, not a 300 MB notebook in the
    grader's memory and a 300 MB feedback page (a single message over the kernel client's limit
    never arrives at all: `kernel_client.MAX_MESSAGE_BYTES`)."""
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import Execute

    original_message, original_update = Execute.process_message, Execute._update_display_id
    used = {"cell": None, "cell_bytes": 0, "notebook": None, "notebook_bytes": 0}

    def over(self, cell_index: int, size: int) -> bool:
        if used["notebook"] is not self.nb:
            used.update(notebook=self.nb, notebook_bytes=0, cell=None)
        if used["cell"] != cell_index:
            used.update(cell=cell_index, cell_bytes=0, noted=False)
        if used["cell_bytes"] + size > cell_bytes or used["notebook_bytes"] + size > notebook_bytes:
            return True
        used["cell_bytes"] += size
        used["notebook_bytes"] += size
        return False

    def process_message(self, msg, cell, cell_index):
        kind = msg.get("msg_type", "")
        if kind == "error" and over(self, cell_index, _size(msg)):  # an error always counts: shortened, kept
            content = msg["content"]
            msg["content"] = {**content, "evalue": str(content.get("evalue", ""))[:2000],
                              "traceback": [str(line)[:2000] for line in list(content.get("traceback") or [])[-5:]]}
            return original_message(self, msg, cell, cell_index)
        if kind not in ("status", "execute_input", "clear_output", "error") and over(self, cell_index, _size(msg)):
            if not used.get("noted"):
                used["noted"] = True
                limit = _amount(cell_bytes) if used["cell_bytes"] + _size(msg) > cell_bytes else \
                    f"the notebook's {_amount(notebook_bytes)}"
                cell.outputs.append(new_output("stream", name="stdout", text=TRUNCATED.format(limit=limit)))
            return None
        return original_message(self, msg, cell, cell_index)

    def update_display_id(self, display_id, msg):
        # an update replaces the data of every output shown with that id: count it once per output
        shown = sum(len(indices) for indices in self._display_id_map.get(display_id, {}).values())
        if over(self, used["cell"] if used["cell"] is not None else -1, _size(msg) * max(1, shown)):
            return None
        return original_update(self, display_id, msg)

    original_poll = Execute._async_poll_for_reply

    async def poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        reply = await original_poll(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive)
        if not task_poll_output_msg.done():  # its outputs were still arriving `iopub_timeout` s after its reply
            cell.outputs.append(new_output("stream", name="stdout", text=LATE))
        elif getattr(self.kc, "dropped_outputs", lambda: 0)():
            cell.outputs.append(new_output("stream", name="stdout", text=TOO_LARGE))
        return reply

    Execute.process_message = process_message
    Execute._update_display_id = update_display_id
    Execute._async_poll_for_reply = poll_for_reply


def _follow_cells(server, timings: list[dict]) -> None:
    """Tell `server` which cell runs; time each notebook (kernel start, then its cells) into `timings`."""
    from nbgrader.preprocessors import Execute

    original_cell, original_notebook = Execute.preprocess_cell, Execute.preprocess

    def preprocess(self, nb, resources, *args, **kwargs):
        record = {"notebook": (resources.get("metadata") or {}).get("name", ""), "start": time.perf_counter(),
                  "first_cell": None, "cells": []}
        timings.append(record)
        try:
            return original_notebook(self, nb, resources, *args, **kwargs)
        finally:
            record["seconds"] = time.perf_counter() - record.pop("start")
            first = record.pop("first_cell")
            record["kernel_start"] = None if first is None else first

    def preprocess_cell(self, cell, resources, index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") if cell.cell_type == "code" else None
        record = timings[-1] if timings else None
        started = time.perf_counter()
        if record is not None and record["first_cell"] is None and cell.cell_type == "code":
            record["first_cell"] = started - record["start"]
        server.enter(grade_id)
        try:
            return original_cell(self, cell, resources, index)
        finally:
            server.leave()
            if record is not None and cell.cell_type == "code":
                record["cells"].append(round(time.perf_counter() - started, 3))

    Execute.preprocess = preprocess
    Execute.preprocess_cell = preprocess_cell


DONE_SUFFIX = ".done"  # beside the verdicts: the notebooks nbgrader finished (graded, saved, written)


def _record_each_notebook(server, verdicts: Path) -> None:
    """After each notebook nbgrader has finished (its grades saved, its file written), write the
    verdicts so far and add the notebook to `verdicts` + DONE_SUFFIX: a run killed when the
    student's time budget runs out leaves what it finished graded, and says what that was."""
    from nbgrader.converters.autograde import Autograde

    original = Autograde.convert_single_notebook

    def convert_single_notebook(self, notebook_filename):
        original(self, notebook_filename)  # (sanitized, executed, graded, saved and written)
        partial = verdicts.with_suffix(".partial")
        partial.write_text(json.dumps(server.results()))
        partial.replace(verdicts)  # (whole, or not at all)
        with open(verdicts.with_name(verdicts.name + DONE_SUFFIX), "a") as done:
            done.write(Path(notebook_filename).stem + "\n")

    Autograde.convert_single_notebook = convert_single_notebook


def finished_notebooks(verdicts: Path) -> list[str]:
    """The notebooks an nbgrader run finished (see `_record_each_notebook`)."""
    try:
        return (verdicts.with_name(verdicts.name + DONE_SUFFIX)).read_text().split()
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", help="JSON: test cell grade_id -> module.check_name (none: no checker, "
                                          "e.g. for generate_feedback)")
    parser.add_argument("--verdicts", help="where to write the checker's verdicts (JSON)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the checker waits for the kernel")
    parser.add_argument("--timings", help="where to write each notebook's kernel start and cell times (JSON)")
    parser.add_argument("nbgrader_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    nbgrader_args = [a for a in args.nbgrader_args if a != "--"]
    if not args.checks:
        return _launch(nbgrader_args)
    from .checker import CheckServer  # imports torch: only where there are checks to run
    from .zygote import CONTROL_ENV, Zygote

    spec = SandboxSpec(**json.loads(Path(os.environ[SPEC_ENV]).read_text()))
    expected = json.loads(Path(args.checks).read_text())
    if os.path.exists(spec.checker_socket):
        os.unlink(spec.checker_socket)
    server = CheckServer(spec.checker_socket, expected, timeout=args.timeout).start()
    timings: list[dict] = []
    _follow_cells(server, timings)
    _limit_outputs()
    _record_each_notebook(server, Path(args.verdicts))
    # the student's kernels are forks of one pre-imported process in a sandbox like theirs: the
    # grading worker's (given in the environment), else one started here for this student
    zygote = None if os.environ.get(CONTROL_ENV) else Zygote(spec)
    try:
        if zygote is not None:
            zygote.start()
            os.environ[CONTROL_ENV] = zygote.control
    except OSError as err:  # then every kernel starts cold, in its own bubblewrap
        print(f"[course-lab] no zygote for this student ({err}); kernels start cold", file=sys.stderr)
    try:
        code = _launch(nbgrader_args)
    finally:
        if zygote is not None:
            zygote.stop()
        server.close()
        Path(args.verdicts).write_text(json.dumps(server.results()))
        if args.timings:
            Path(args.timings).write_text(json.dumps(timings))
    return code


def alembic_head() -> str:
    """The head revision of nbgrader's gradebook migrations, read from nbgrader's own migration
    scripts in this process."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:  # the URL nbgrader's own lookup writes
        return ScriptDirectory.from_config(Config(ini)).get_current_head()


def _launch(nbgrader_args: list[str]) -> int:
    """`nbgrader ARGS` in this process; its exit status."""
    import nbgrader.api
    from nbgrader.apps.nbgraderapp import NbGraderApp

    # nbgrader stamps a new gradebook (the template's, once per run) with the migrations' head,
    # which it asks a fresh `alembic heads` process for: 3 s of the run's start, for a constant
    nbgrader.api.get_alembic_version = alembic_head
    try:
        NbGraderApp.launch_instance(argv=nbgrader_args)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
