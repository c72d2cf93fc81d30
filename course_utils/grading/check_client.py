"""Kernel side of a hidden check at grading time (this module runs inside the sandbox).

When a TA grades, `course_utils.checks` inside the sandboxed kernel holds only stubs made by
`remote_check`: the hidden test cell's `check_x(student_function)` connects to the trusted
checker outside the sandbox (the socket in `$COURSE_CHECKER_SOCKET`), which runs the real
check with a proxy of the function. Each call of the proxy arrives here, runs the student's
function, and goes back as plain data (`course_utils.grading.protocol`). The checker records
the verdict itself; what this module raises only shows the student the check's message.

`forbid_calls` is the "write it yourself" rule: a profile hook that sees a library reference
run. It runs in the student's interpreter, so a determined student can switch it off: it is
a best-effort check, and the answers must still be right.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import socket
import sys
import warnings
from typing import Callable, Iterator

import torch

from . import protocol

SOCKET_ENV = "COURSE_CHECKER_SOCKET"


def _code_of(ref) -> tuple[object, str] | None:
    """The code object behind `ref` (a function, or a "module:qualname" string whose module is
    already imported), and its printable name."""
    if isinstance(ref, str):
        module_name, _, qualname = ref.partition(":")
        if module_name.split(".")[0] != "course_utils" and module_name.split(".")[0] not in sys.modules:
            return None
        try:
            obj = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            return None
        ref = obj
    code = getattr(ref, "__code__", None)
    if code is None:
        return None
    return code, f"{ref.__module__}.{ref.__qualname__}"


@contextlib.contextmanager
def watching(references) -> Iterator[list[str]]:
    """The names of the `references` (functions, or "module:qualname" strings) that run inside
    the block, caught by their code objects with a profile hook: every alias a student might
    use (`from course_utils.metrics import accuracy as acc`, a wrapper, ...) counts."""
    codes = dict(c for c in map(_code_of, references) if c is not None)
    called: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield called
    finally:
        sys.setprofile(previous)


@contextlib.contextmanager
def forbid_calls(*references, reason: str) -> Iterator[None]:
    """Fail if any of `references` runs inside the block (see `watching`)."""
    with watching(references) as called:
        yield
    if called:
        raise AssertionError(f"your function calls {called[0]}; {reason}")


def remote_check(name: str) -> Callable[[Callable], None]:
    """The stand-in for `course_utils.checks.<module>.<check>` inside the grading sandbox."""
    def check(function: Callable) -> None:
        message = _run(name, function)
        if message is not None:
            raise AssertionError(message)

    check.__name__ = check.__qualname__ = name.rpartition(".")[2]
    check.__doc__ = "Runs the hidden check of this exercise in the grader's checker (outside this kernel)."
    return check


def _signature(function: Callable) -> list:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    return [(p.name, int(p.kind), p.default is not inspect.Parameter.empty,
             None if p.default is inspect.Parameter.empty else protocol.plain(p.default)) for p in parameters]


def _run(name: str, function: Callable) -> str | None:
    """Serve the checker's calls of `function`; the check's failure message, or None if it passed."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return "the hidden checks run only when the lab is graded"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        protocol.send(sock, {"op": "check", "check": name, "name": str(getattr(function, "__name__", "function")),
                             "signature": _signature(function)})
        while True:
            message = protocol.receive(sock, trusted=True)
            if message["op"] == "call":
                protocol.send(sock, _call(function, message))
            else:
                return None if message["passed"] else message["message"]


def _call(function: Callable, message: dict) -> dict:
    args, kwargs = message["args"], message["kwargs"]
    objects = protocol.stateful((args, kwargs))
    for obj, grads in zip(objects, message.get("grads", ())):
        protocol.restore_gradients(obj, grads)
    torch.set_rng_state(message["rng"])
    reply: dict = {"op": "result", "result": None, "error": None, "grads": {}, "called": []}
    try:
        with watching(message.get("forbid", ())) as called, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = function(*args, **kwargs)
        reply["called"] = called
        reply["result"] = protocol.plain(result)
        reply["grads"] = _input_gradients(result, objects)
    except Exception as err:
        reply["error"] = {"type": type(err).__name__, "message": str(err)[:2000]}
    reply["rng"] = torch.get_rng_state()
    reply["state"] = [protocol.capture_state(obj) for obj in objects]
    return reply


def _input_gradients(result, objects: list) -> dict:
    """For a scalar result that requires grad: its gradient with respect to each input tensor
    that requires grad (the checker rebuilds `result.backward()` from them)."""
    if not (isinstance(result, torch.Tensor) and result.requires_grad and result.numel() == 1):
        return {}
    leaves = [(i, obj) for i, obj in enumerate(objects) if isinstance(obj, torch.Tensor) and obj.requires_grad]
    if not leaves:
        return {}
    grads = torch.autograd.grad(result.sum(), [obj for _, obj in leaves], allow_unused=True, retain_graph=True)
    return {i: protocol.plain(g) for (i, _), g in zip(leaves, grads)}
