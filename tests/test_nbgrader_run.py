"""The grading processes start fast without losing anything: nbgrader_run keeps jsonschema's
IRI checker (3 s of parser building at import) out, and nbformat still validates notebooks;
a run without checks starts no checker and imports no torch."""
import json
import subprocess
import sys

PROBE = """
import sys, time
import course_utils.grading.nbgrader_run  # noqa: F401  (what every grading process imports first)
import nbformat
from nbformat.v4 import new_code_cell, new_notebook
nb = new_notebook(cells=[new_code_cell("1 + 1")])
nbformat.validate(nb)
broken = new_notebook(cells=[new_code_cell("x")]); broken.cells[0]["cell_type"] = "nonsense"
try:
    nbformat.validate(broken)
    invalid = False
except nbformat.ValidationError:
    invalid = True
print(json.dumps({"rfc3987_syntax": sys.modules.get("rfc3987_syntax", "absent") is None,
                  "torch": "torch" in sys.modules, "invalid_caught": invalid}))
"""


def test_nbformat_validates_without_the_iri_parser_and_without_torch():
    out = subprocess.run([sys.executable, "-c", "import json\n" + PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"rfc3987_syntax": True, "torch": False, "invalid_caught": True}


def test_kernel_options_throw_the_kernel_away_when_its_notebook_is_done(tmp_path):
    from course_utils.grading.student import kernel_options as _kernel_options

    options = _kernel_options(tmp_path, 30)
    assert "--ExecutePreprocessor.shutdown_kernel=immediate" in options
    assert "--ExecutePreprocessor.timeout=30" in options and "--KernelManager.transport=ipc" in options


def test_timings_are_added_per_notebook(tmp_path):
    from course_utils.grading.student import _add_timings

    path = tmp_path / "timings.json"
    path.write_text(json.dumps([{"notebook": "00_getting_started", "kernel_start": 0.61, "cells": [0.1, 2.0, 0.4],
                                 "seconds": 3.2}, {"notebook": "01_x", "kernel_start": None, "cells": []}]))
    phases = {}
    _add_timings(path, phases)
    assert phases == {"kernel start 00_getting_started": 0.61, "cells 00_getting_started": 2.5, "cells 01_x": 0.0}
    _add_timings(tmp_path / "missing.json", phases)  # nothing written (nbgrader failed early): nothing added
    assert len(phases) == 3


def test_the_grading_kernel_client_and_manager_wait_for_events_not_timers(tmp_path, monkeypatch):
    """GradingKernelClient: kernel_info answered and IOPub connected, then ready; cells run; its
    sockets retry connecting every RECONNECT_MS. GradingKernelManager: an immediate shutdown
    returns once the kernel's process has exited and been reaped, without jupyter_client's
    0.1 s polling sleep."""
    import asyncio

    import jupyter_client.manager
    import zmq

    from course_utils.grading import kernel_client
    from course_utils.grading.student import kernel_options as _kernel_options
    from course_utils.grading.kernel_client import GradingKernelClient, GradingKernelManager

    options = _kernel_options(tmp_path, 30)
    assert "--KernelManager.client_class=course_utils.grading.kernel_client.GradingKernelClient" in options
    assert "--ExecutePreprocessor.kernel_manager_class=course_utils.grading.kernel_client.GradingKernelManager" \
        in options
    slept = []
    real_sleep = asyncio.sleep

    async def sleep(seconds, *args):
        slept.append(seconds)
        return await real_sleep(seconds, *args)

    async def run() -> str:
        km = GradingKernelManager(kernel_name="python3",
                                  client_class="course_utils.grading.kernel_client.GradingKernelClient")
        await km.start_kernel()
        kc = km.client()
        assert isinstance(kc, GradingKernelClient)
        kc.start_channels()
        try:
            assert kc.shell_channel.socket.getsockopt(zmq.RECONNECT_IVL) == kernel_client.RECONNECT_MS < 100  # (0MQ's)
            await kc.wait_for_ready(timeout=60)
            out = []
            reply = await kc.execute_interactive("print(6 * 7)", timeout=30,
                                                 output_hook=lambda m: out.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok"
            return "".join(out)
        finally:
            kc.stop_channels()
            process = km.provisioner.process
            monkeypatch.setattr(jupyter_client.manager.asyncio, "sleep", sleep)
            await km.shutdown_kernel(now=True)
            monkeypatch.undo()
            assert process.returncode is not None and not km.has_kernel  # gone and reaped
            assert 0.1 not in slept, slept

    assert asyncio.run(run()).strip() == "42"


def test_a_new_gradebook_is_stamped_with_the_revision_alembic_itself_reports(monkeypatch):
    """nbgrader_run reads the migrations' head in-process instead of running `alembic heads`: the
    same stamp, so that nbgrader's own upgrade check accepts the gradebook."""
    import os

    from nbgrader.api import get_alembic_version

    from course_utils.grading.nbgrader_run import alembic_head

    # nbgrader runs the `alembic` command beside this Python
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert alembic_head() == get_alembic_version()


def test_a_cells_outputs_are_capped_while_they_arrive_with_a_note(tmp_path):
    """nbgrader keeps at most OUTPUT_CELL_BYTES of a cell's outputs and OUTPUT_NOTEBOOK_BYTES of a
    notebook's, with a note where it stopped; and a single output over the kernel client's message
    limit never arrives, which the cell says too (issue 33, rows 3 and 9). Run with a plain local
    kernel (the capping is nbgrader's side; a graded kernel is only sandboxed)."""
    code = """
import json
from nbformat.v4 import new_code_cell, new_notebook
from course_utils.grading import nbgrader_run
nbgrader_run._limit_outputs(cell_bytes=100_000, notebook_bytes=150_000)
from nbgrader.preprocessors import Execute
cells = ["for _ in range(50):\\n    print('x' * 10_000, flush=True)", "print('small')",
         "for _ in range(4):\\n    print('y' * 10_000, flush=True)", "for _ in range(2):\\n    print('z' * 10_000, flush=True)",
         "print('after')"]
nb = new_notebook(cells=[new_code_cell(c) for c in cells])
nb, _ = Execute(timeout=60, kernel_name="python3",
                kernel_manager_class="course_utils.grading.kernel_client.GradingKernelManager").preprocess(nb, {})
print(json.dumps([["".join(o.get("text", "")) for o in c.outputs] for c in nb.cells]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    cells = json.loads(out.stdout.strip().splitlines()[-1])
    first = "".join(cells[0])
    assert first.count("x") <= 100_000 and "output truncated" in first and "went past 98 kB" in first
    assert cells[1] == ["small\n"]
    assert "".join(cells[2]).count("y") == 40_000 and "truncated" not in "".join(cells[2])
    assert "went past the notebook's 146 kB" in "".join(cells[3])
    assert cells[4] == ["after\n"]  # (small enough for what is left of the notebook's share)


def test_kernels_take_no_message_over_the_limit_and_flooded_cells_do_not_fail_the_notebook(tmp_path):
    import zmq

    from course_utils.grading import kernel_client
    from course_utils.grading.student import kernel_options

    context = kernel_client.GradingKernelClient()._context_default()
    assert context.getsockopt(zmq.MAXMSGSIZE) == kernel_client.MAX_MESSAGE_BYTES == 16 * 2**20
    assert "--ExecutePreprocessor.raise_on_iopub_timeout=False" in kernel_options(tmp_path, 30)
