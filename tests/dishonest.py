"""Dishonest notebook-00 submissions for the grading tests: each answer cell attacks the grader,
then defines a *wrong* batch_accuracy (or none), so any point it earns is a point stolen.

The attacks know the real paths of the run (the checkout, SUBMISSIONS, OUT), as a student who
has read the repository and guessed the TA's layout would. MARKER names every file an attack
tries to create outside its sandbox; the tests look for it afterwards.
"""
from __future__ import annotations

MARKER = "PWNED-by-a-student"
# right on the visible test (3 of its 4 rows are right), wrong on every other input: only the
# hidden check tells it from a working answer, so only the checker can take the points away
WRONG = "\ndef batch_accuracy(logits, labels):\n    return 0.75\n"
GOOD = "\ndef batch_accuracy(logits, labels):\n    return (logits.argmax(1) == labels).float().mean().item()\n"
SLEEP = "987.654"  # a process left behind runs `sleep 987.654`


def attacks(root: str, submissions: str, out: str) -> dict[str, str]:
    """student id -> the source of their batch_accuracy answer cell."""
    targets = [root, submissions, out, "/tmp", "/root", "/home"]
    return {
        # 1. write scores into every gradebook it can find
        "cheat-gradebook": f"""
import glob, os, sqlite3
roots = {targets!r} + [os.getcwd(), os.path.expanduser("~")]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for link in ("cwd", "root"):
            try:
                roots.append(os.readlink(f"/proc/{{pid}}/{{link}}"))
            except OSError:
                pass
for r in roots:
    for path in glob.glob(os.path.join(r, "**", "gradebook.db"), recursive=True)[:100]:
        try:
            db = sqlite3.connect(path)
            db.execute("update grade set auto_score=99, manual_score=99, extra_credit=99")
            db.commit()
        except Exception:
            pass
""" + WRONG,
        # 2. replace the hidden check, on its module and in sys.modules
        "cheat-patch-check": """
import sys
import course_utils.checks.getting_started as checks
checks.check_batch_accuracy = lambda function: None
sys.modules["course_utils.checks.getting_started"].check_batch_accuracy = lambda function: None
""" + WRONG,
        # 3. replace builtins a check might use
        "cheat-builtins": """
import builtins
builtins.abs = lambda value: 0.0
builtins.round = lambda value, *args: 0.75
""" + WRONG,
        # 4. an IPython input transformer that blanks every later test cell
        "cheat-input-transformer": """
def _blank(lines):
    return ["pass\\n"] if any("batch_accuracy(" in line and "def " not in line for line in lines) else lines
get_ipython().input_transformers_post.append(_blank)
""" + WRONG,
        # 5. an AST transformer that wraps every later cell in try/except
        "cheat-ast-transformer": """
import ast
class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
get_ipython().ast_transformers.append(_Swallow())
""" + WRONG,
        # 6. an answer whose arithmetic and comparisons always say "right"
        "cheat-always-equal": """
class _Sneaky(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __gt__(self, other): return True
    def __sub__(self, other): return _Sneaky(0.0)
    def __rsub__(self, other): return _Sneaky(0.0)
    def __abs__(self): return 0.0
    __hash__ = float.__hash__
def batch_accuracy(logits, labels):
    return _Sneaky(0.75)
""",
        # 7. copy a classmate's answer from SUBMISSIONS
        "cheat-copy-classmate": f"""
import glob, json
for path in glob.glob({submissions!r} + "/*/lab4/00_getting_started.ipynb"):
    for cell in json.load(open(path))["cells"]:
        if cell.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") == "batch_accuracy":
            exec("".join(cell["source"]))
if "batch_accuracy" not in globals():
    def batch_accuracy(logits, labels):
        return 0.75
""",
        # 8. overwrite classmates' feedback, grades.csv, the re-run state; drop files everywhere
        "cheat-overwrite": f"""
import glob, os
for folder in {targets!r} + [os.path.expanduser("~")]:
    try:
        open(os.path.join(folder, {MARKER!r}), "w").write("x")
    except OSError:
        pass
for path in glob.glob({out!r} + "/feedback/*/*.html") + glob.glob({out!r} + "/*.csv") + glob.glob({out!r} + "/.*.json"):
    try:
        open(path, "w").write({MARKER!r})
    except OSError:
        pass
""" + WRONG,
        # 9. poison the hidden-check module in the TA's checkout for every later student
        "cheat-poison-checks": f"""
for path in [{root!r} + "/course_utils/checks/getting_started.py", {root!r} + "/course_utils/checks/__init__.py"]:
    try:
        with open(path, "a") as f:
            f.write("\\nraise AssertionError('your answer is wrong')  # {MARKER}\\n")
    except OSError:
        pass
""" + WRONG,
        # 10. leave processes behind that rewrite grades.csv after the run
        "cheat-leave-process": f"""
import os, subprocess
try:
    subprocess.Popen(["/bin/sh", "-c", "sleep {SLEEP}; echo {MARKER} > {out}/grades.csv"], start_new_session=True)
except OSError:
    pass
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{SLEEP}"])
    os._exit(0)
""" + WRONG,
        # 11. kill every process it can see, the grader first
        "cheat-kill-grader": """
import os, signal
for pid in [os.getppid()] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
""" + WRONG,
        # 12. print the hidden checks, the solutions and the gradebook into its own feedback
        "cheat-leak": f"""
import glob, inspect
import course_utils.checks.getting_started as checks
print(inspect.getsource(checks))
for path in (glob.glob({root!r} + "/solutions/lab4/00_*.ipynb") + glob.glob({root!r} + "/course_utils/checks/*.py")
             + glob.glob("/tmp/**/*.ipynb", recursive=True) + glob.glob("/tmp/**/gradebook.db", recursive=True)):
    print(open(path, errors="replace").read())
""" + WRONG,
        # 13. raw HTML and JavaScript into the feedback page (with a right answer: this one keeps its points)
        "script-output": """
from IPython.display import HTML, Javascript, display
display(HTML("<script>alert('xss-from-a-student')</script><b>bold</b>"))
display(Javascript("alert('js-from-a-student')"))
""" + GOOD,
        # 14. the library's reference with the profile hook switched off: best-effort rule beaten,
        #     but the answer is computed; it is flagged for the TA
        "reference-hook-off": """
import sys
sys.setprofile = lambda *args, **kwargs: None
from course_utils.metrics import accuracy
def batch_accuracy(logits, labels):
    return float(accuracy(logits, labels))
""",
    }


# the cheats that must score 0 (the others are tested for what they do)
ZERO = [s for s in attacks("", "", "") if s.startswith("cheat-")]
