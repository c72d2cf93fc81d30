"""One nbgrader command for one student, with that student's trusted checker beside it.

`python -m course_utils.grading.nbgrader_run --checks CHECKS.json --verdicts OUT.json -- ARGS`
runs `nbgrader ARGS` in this process (outside the sandbox: nbgrader never runs student code,
it only talks to the sandboxed kernel) and, in a thread, the `CheckServer` that the kernel's
hidden-check stubs connect to. nbgrader's cell loop tells the server which cell is running,
so a check counts only inside its own test cell. The verdicts are written to OUT.json, a
file the kernel cannot reach.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .checker import CheckServer
from .sandbox import SPEC_ENV, SandboxSpec


def _follow_cells(server: CheckServer) -> None:
    from nbgrader.preprocessors import Execute

    original = Execute.preprocess_cell

    def preprocess_cell(self, cell, resources, index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") if cell.cell_type == "code" else None
        server.enter(grade_id)
        try:
            return original(self, cell, resources, index)
        finally:
            server.leave()

    Execute.preprocess_cell = preprocess_cell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", required=True, help="JSON: test cell grade_id -> module.check_name")
    parser.add_argument("--verdicts", required=True, help="where to write the checker's verdicts (JSON)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the checker waits for the kernel")
    parser.add_argument("nbgrader_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    nbgrader_args = [a for a in args.nbgrader_args if a != "--"]
    spec = SandboxSpec(**json.loads(Path(os.environ[SPEC_ENV]).read_text()))
    expected = json.loads(Path(args.checks).read_text())
    if os.path.exists(spec.checker_socket):
        os.unlink(spec.checker_socket)
    server = CheckServer(spec.checker_socket, expected, timeout=args.timeout).start()
    _follow_cells(server)
    code = 0
    try:
        from nbgrader.apps.nbgraderapp import NbGraderApp

        NbGraderApp.launch_instance(argv=nbgrader_args)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        server.close()
        Path(args.verdicts).write_text(json.dumps(server.results()))
    return code


if __name__ == "__main__":
    sys.exit(main())
