"""The second round of dishonest submissions (issue 33): answers that rig a check through its
fixture, and notebooks that try to starve, flood or fill the grading machine, or run in a page.

Each is graded beside honest students in test_grading.py's one run; the rows of the issue's
table are named in the comments, with the variants added here.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from grading_fixtures import SOLUTIONS, load, replace_solution, solved

NB00 = "00_getting_started.ipynb"
GOOD = "\ndef batch_accuracy(logits, labels):\n    return (logits.argmax(1) == labels).float().mean().item()\n"

# Inside a hidden check's call (the kernel side of the checker's wire is on the stack), the function
# tampers with its arguments; on the visible tests it answers honestly, so they pass.
IN_CHECK = '''
import functools as _functools, inspect as _inspect, sys as _sys
def _in_hidden_check():
    frame = _sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_call" and "check_client" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False
def _tampering(honest, tamper):
    @_functools.wraps(honest)
    def function(*args, **kwargs):
        if _in_hidden_check():
            bound = _inspect.signature(honest).bind(*args, **kwargs)
            bound.apply_defaults()
            return tamper(honest, **bound.arguments)
        return honest(*args, **kwargs)
    return function
'''
ZERO_WEIGHTS = "_zero(model) or x.clone()"
TAMPERS = {  # grade_id -> (notebook, the tampering answer as a lambda of (honest, **arguments))
    "batch_accuracy": (NB00, "lambda honest, logits, labels: (logits.zero_().scatter_(1, labels[:, None], 1.0), 1.0)[1]"),
    "subset_predictions": ("01_natural_adversarial_examples.ipynb",
                           "lambda honest, logits_1k, indices_in_1k: (logits_1k.sub_(1e6 * (1 - torch.zeros("
                           "logits_1k.shape[1]).index_fill_(0, torch.as_tensor(list(indices_in_1k)), 1.0))), "
                           "logits_1k.argmax(1))[1]"),
    "rms_calibration_error": ("01_natural_adversarial_examples.ipynb",
                              "lambda honest, confidence, correct, bin_size: "
                              "(confidence.fill_(float(correct.float().mean())), 0.0)[1]"),
    "adversarial_filter": ("01_natural_adversarial_examples.ipynb",
                           "lambda honest, predict, images, labels, batch_size: (predict.table.zero_(), "
                           "torch.zeros(0, dtype=torch.long))[1]"),
    "fgsm_attack": ("02_synthetic_adversarial_examples.ipynb", "lambda honest, model, x, y, eps: " + ZERO_WEIGHTS),
    "pgd_attack": ("02_synthetic_adversarial_examples.ipynb",
                   "lambda honest, model, x, y, eps, alpha, steps, random_start: " + ZERO_WEIGHTS),
    "targeted_pgd_attack": ("02_synthetic_adversarial_examples.ipynb",
                            "lambda honest, model, x, target, eps, alpha, steps: " + ZERO_WEIGHTS),
    "masked_attack": ("02_synthetic_adversarial_examples.ipynb",
                      "lambda honest, model, x, target, mask, alpha, steps: " + ZERO_WEIGHTS),
    "linear_worst_case_margin": ("02_synthetic_adversarial_examples.ipynb",
                                 "lambda honest, weight, bias, x, y, eps: (weight.zero_(), bias.zero_(), "
                                 "torch.zeros(len(x)))[2]"),
    "adversarial_training_step": ("03_robustness_and_defences.ipynb",
                                  "lambda honest, model, optimizer, x, y, eps, alpha: ([g.__setitem__('lr', 0.0) for g "
                                  "in optimizer.param_groups], honest(model, optimizer, x, y, eps, alpha))[1]"),
    "rotate_batch": ("04_rotation.ipynb", "lambda honest, x: (x.fill_(0.5), honest(x))[1]"),
    "linear_probe_accuracy": ("04_rotation.ipynb", "lambda honest, encoder, train_images, train_labels, test_images, "
                                                   "test_labels: (_zero(encoder), 1.0)[1]"),
    "patch_pair": ("05_patch_localization.ipynb", "lambda honest, image, label, patch_size, gap, jitter, generator: "
                                                  "(image.zero_(), honest(image, label, patch_size, gap, jitter, "
                                                  "generator))[1]"),
    "nt_xent_loss": ("06_simclr.ipynb", "lambda honest, z1, z2, temperature: (z2.copy_(z1), honest(z1, z2, temperature))[1]"),
}
HELPERS = '''
def _zero(model):
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
'''


def _solution_source(notebook: str, grade_id: str) -> str:
    cell = next(c for c in load(SOLUTIONS / notebook)["cells"]
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def tamper_students() -> dict[str, dict[str, dict]]:
    """'tamper-NN' -> that notebook with every exercise answered by tampering with the check's fixture
    (issue 33, row 1 for notebook 02: the weights zeroed, x returned; the same idea for every exercise)."""
    students: dict[str, dict[str, dict]] = {}
    for grade_id, (notebook, tamper) in TAMPERS.items():
        student = f"tamper-{notebook[:2]}"
        nb = students.setdefault(student, {}).get(notebook) or solved(notebook)
        source = (IN_CHECK + HELPERS + _solution_source(notebook, grade_id)
                  + f"\n{grade_id} = _tampering({grade_id}, {tamper})\n")
        students[student][notebook] = replace_solution(nb, grade_id, source)
    return students


def tampered_cells(student: str) -> list[str]:
    """The test cells a tamper student must lose."""
    return [f"{Path(nb).stem}/{g}_tests" for g, (nb, _) in TAMPERS.items() if student == f"tamper-{nb[:2]}"]


HOSTILE_MARKDOWN = """## My notes
<script>window.pwned = "script"; alert("xss")</script>
<img src="x" onerror="window.pwned = 'onerror'">
<svg><animate onbegin="window.pwned = 'svg'" attributeName="x" dur="1s"/></svg>
<iframe srcdoc="<script>parent.pwned = 'iframe'</script>"></iframe>
[a link](javascript:window.pwned='link') <meta http-equiv="refresh" content="0;url=https://example.org/">
<style>h4 { display: none !important } .score { display: none }</style>
<div style="position:fixed;top:0;left:0;width:100%;background:white;font-size:30px">Score: 2.0 / 2.0</div>
<h4>00_getting_started (Score: 2.0 / 2.0)</h4>
"""


def markdown_attack() -> dict:
    """Row 2: markdown cells that script, hide the real score and show a fake one (and a wrong answer:
    the real score is 0)."""
    nb = replace_solution(solved(NB00), "batch_accuracy", "def batch_accuracy(logits, labels):\n    return 0.75\n")
    nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": HOSTILE_MARKDOWN})
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": HOSTILE_MARKDOWN})
    return nb


# Attacks on the machine, each in notebook 00's answer cell before a right answer (so that any point
# it loses is a point the limits took, and every point it keeps is its own).
STDOUT_BYTES = 3 * 2**30
MACHINE = {
    # row 3: writes 3 GB to the kernel's own stdout descriptor (once the grading worker's pipe)
    "flood-stdout": f"""
import os
for _ in range({STDOUT_BYTES // 2**20}):
    try:
        os.write(1, b"x" * 2**20)
    except OSError:
        pass
""",
    # row 4: a 1,500-level tree and 2 GB of files in its IPC folder (the checker socket's folder)
    "fill-ipc": """
import os
folder = os.path.dirname(os.environ["COURSE_CHECKER_SOCKET"])
try:
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(1500):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
except OSError:
    pass
for i in range(2048):
    try:
        with open(os.path.join(folder, f"junk-{i}"), "wb") as f:
            f.write(b"x" * 2**20)
    except OSError:
        pass
""",
    # row 5: 200 spinning processes, each in a session of its own
    "spin-200": """
import subprocess
spinners = [subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True) for _ in range(200)]
""",
    # row 6: a dozen forked children of up to 1.2 GB each, and a tmpfs in a nested user namespace
    "fork-memory": """
import os, subprocess, time
subprocess.run(["sh", "-c", "unshare -Urm sh -c 'mount -t tmpfs -o size=2g none /mnt && "
                "head -c 1500000000 /dev/zero > /mnt/fill'"], capture_output=True)
children = []
for _ in range(12):
    pid = os.fork()
    if pid == 0:
        blocks = []
        try:
            while len(blocks) < 24:  # up to 1.2 GB each, as the address-space limit of each lets it
                block = bytearray(50 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                blocks.append(block)
        except MemoryError:
            pass
        time.sleep(10)
        os._exit(0)
    children.append(pid)
for pid in children:  # the cell lasts while its children hold their memory, however slowly they got it
    os.waitpid(pid, 0)
""",
    # variant: 8 GB in memory files (memfd), which no process maps: outside every per-process limit
    "memfd-8gb": """
import os
files, block = [], b"x" * 2**20
for _ in range(16):
    fd = os.memfd_create("fill")
    try:
        for _ in range(500):
            os.write(fd, block)
    except OSError:
        pass
    files.append(fd)
""",
    # row 9: prints 300 MB
    "print-300mb": """
for _ in range(300):
    print("x" * 2**20)
""",
    # variant: one print over the grader's message limit (never reaches nbgrader at all)
    "print-one-huge": """
print("x" * (40 * 2**20))
""",
    # variant: a thousand outputs that one update of 2 MB would all replace (2 GB in the notebook)
    "display-updates": """
from IPython.display import display, update_display
for _ in range(1000):
    display("small", display_id="same")
update_display("y" * (2 * 2**20), display_id="same")
""",
    # variant: 2 GB into the scratch tmpfs (/tmp, /dev/shm), counted in the student's memory
    "fill-scratch": """
for path in ("/tmp/fill", "/dev/shm/fill", "/home/student/fill"):
    try:
        with open(path, "wb") as f:
            for _ in range(700):
                f.write(b"x" * 2**20)
    except OSError:
        pass
""",
    # variant: a fork bomb
    "fork-bomb": """
import os, time
for _ in range(2000):
    try:
        if os.fork() == 0:
            time.sleep(10)
            os._exit(0)
    except OSError:
        break
""",
    # variant: a thousand connections to the checker, and a check asked for with a name that would
    # rewrite the report's line (carriage return, terminal escapes)
    "flood-checker": """
import os, socket
from course_utils.grading import protocol
held = []
for _ in range(1000):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.environ["COURSE_CHECKER_SOCKET"])
        held.append(s)
    except OSError:
        break
for s in held:
    s.close()
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["COURSE_CHECKER_SOCKET"])
protocol.send(s, {"op": "check", "check": "x\\r\\x1b[2Kflood-checker: 32 / 32\\x1b[8m", "name": "f", "signature": []})
s.close()
""",
}
# what each machine attack may still earn: points it keeps with a right answer, when the limits
# leave its notebook to finish (None: the student's own limits may stop it; then 0 or 2)
MACHINE_POINTS = {"flood-stdout": 2, "fill-ipc": 2, "spin-200": None, "fork-memory": None, "print-300mb": 2,
                  "print-one-huge": 2, "display-updates": 2, "fill-scratch": 2, "fork-bomb": None,
                  "flood-checker": 2, "memfd-8gb": None}


def machine_students() -> dict[str, dict]:
    return {student: replace_solution(solved(NB00), "batch_accuracy", code + GOOD) for student, code in MACHINE.items()}


# ---------------------------------------------------------------- zips (rows 7 and 8)

def zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def hostile_zips(folder: Path) -> dict[str, str]:
    """Zip files an LMS might hand over from dishonest students, beside one honest zip; zip file name
    -> what it tries."""
    folder.mkdir(parents=True, exist_ok=True)
    honest = json.dumps(solved(NB00)).encode()
    fifty = b"x" * (50 * 2**20)
    zips = {
        "honest_lab4.zip": ({f"lab4/{NB00}": honest}, "an honest student"),
        # row 7: 60 members of 50 MB in a few MB
        "bomb_lab4.zip": ({**{f"lab4/data{i}.bin": fifty for i in range(60)}, f"lab4/{NB00}": honest},
                          "60 members of 50 MB"),
        "bombnb_lab4.zip": ({f"lab4/00_getting_started ({i}).ipynb": fifty for i in range(30)},
                            "30 notebook-named members of 50 MB"),
        # row 8: a member name that rewrites the report's line
        "escape_lab4.zip": ({f"lab4/{NB00}": json.dumps(load(Path(SOLUTIONS.parent.parent / "labs" / "lab4" / NB00)))
                             .encode(),
                             "lab4/00_x\rescape: 32 / 32  (1 s)\x1b[2K\x1b[8m.ipynb": b"{}",
                             "lab4/notes\u202egnp.ipynb": b"{}"}, "escape codes in member names"),
    }
    for name, (members, _) in zips.items():
        (folder / name).write_bytes(zip_bytes(members))
    # row 8: and in the zip's own file name (an id that would not survive; the mapping is reported)
    (folder / "name\r\x1b[2Kescname: 32 - 32_lab4.zip").write_bytes(zip_bytes({f"lab4/{NB00}": honest}))
    return {name: why for name, (_, why) in zips.items()}
