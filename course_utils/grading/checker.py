"""The trusted checker: hidden checks run here, outside the student's sandbox.

One `CheckServer` serves one student's grading run. It listens on a Unix socket that is the
only thing the sandboxed kernel shares with it. A hidden test cell's stub
(`check_client.remote_check`) asks for its check; the server runs the real
`course_utils.checks.<module>.check_<exercise>` here with a `RemoteFunction` in place of the
student's function. Every call of that proxy runs the function in the kernel, and only plain
data comes back (`protocol`), which the proxy mirrors onto the checker's own arguments before
the check's assertions run. A kernel that patches anything can change only the answers it
gives.

The server knows which notebook cell nbgrader is executing (`enter`/`leave`, called by the
grading driver around each cell), and a check counts only when it is asked for by the test
cell it belongs to, and finishes while that cell runs. A cell's verdict is "passed" when its
check ran at least once and never failed; the grade uses that verdict, never the kernel's.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import socket
import threading
from typing import Any

import torch

from . import protocol


class _RemoteScalar(torch.autograd.Function):
    """A scalar computed in the kernel whose backward() hands the checker's inputs the
    gradients the kernel computed (so a check can call loss.backward())."""

    @staticmethod
    def forward(ctx, value, grads, *leaves):
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return (None, None, *[None if g is None else g * grad_output for g in ctx.grads])


def _error_type(name: Any) -> type:
    name = re.sub(r"\W", "_", str(name))[:60] or "Exception"
    return AssertionError if name == "AssertionError" else type(name, (Exception,), {})


def _spec(ref) -> str:
    return ref if isinstance(ref, str) else f"{ref.__module__}:{ref.__qualname__}"


class RemoteFunction:
    """The student's function, as the checker sees it: each call runs in the sandboxed kernel."""

    def __init__(self, conn: socket.socket, name: str, signature: list):
        self._conn = conn
        self.__name__ = self.__qualname__ = re.sub(r"[^\w.<>]", "_", str(name))[:80] or "function"
        self.__signature__ = self._rebuild_signature(signature)

    @staticmethod
    def _rebuild_signature(signature: list) -> inspect.Signature | None:
        try:
            return inspect.Signature([
                inspect.Parameter(str(name), inspect._ParameterKind(int(kind)),
                                  default=protocol.unplain(default) if has_default else inspect.Parameter.empty)
                for name, kind, has_default, default in signature])
        except (TypeError, ValueError, protocol.ProtocolError):
            return None

    def __call__(self, *args, **kwargs):
        return self.invoke(args, kwargs)

    def invoke(self, args: tuple, kwargs: dict, *, what: str | None = None, forbid=(), reason: str = "",
               judge=None):
        """Run the function in the kernel on `args`; return its result. `judge(states)` sees the state
        the call left its arguments in first (and raises for a change the exercise does not allow);
        only then is that state mirrored onto the checker's own arguments."""
        objects = protocol.stateful((args, kwargs))
        protocol.send(self._conn, {"op": "call", "args": args, "kwargs": kwargs, "rng": torch.get_rng_state(),
                                   "grads": [protocol.gradients_of(obj) for obj in objects],
                                   "forbid": [_spec(f) for f in forbid]})
        reply = protocol.receive(self._conn, trusted=False)
        if not isinstance(reply, dict) or reply.get("op") != "result":
            raise protocol.ProtocolError("expected the result of a call")
        states = reply.get("state")
        if not isinstance(states, list) or len(states) != len(objects):
            raise protocol.ProtocolError("the arguments' state does not match the arguments")
        if judge is not None:
            judge(states)
        for obj, state in zip(objects, states):
            protocol.mirror_state(obj, state)
        rng = reply.get("rng")
        if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.shape == torch.get_rng_state().shape:
            torch.set_rng_state(rng)
        error = reply.get("error")
        if error:
            if not isinstance(error, dict):
                raise protocol.ProtocolError("malformed error")
            err = _error_type(error.get("type"))(str(error.get("message", ""))[:2000])
            if what is None or isinstance(err, AssertionError):
                raise err
            raise AssertionError(f"{self.__name__} raised {type(err).__name__} on {what}: {err}")
        called = reply.get("called")
        if called and isinstance(called, list):
            raise AssertionError(f"your function calls {str(called[0])[:200]}; {reason}")
        result = protocol.unplain(reply.get("result"))
        grads = reply.get("grads") or {}
        if isinstance(result, torch.Tensor) and result.numel() == 1 and isinstance(grads, dict) and grads:
            leaves = [(i, obj) for i, obj in enumerate(objects) if isinstance(obj, torch.Tensor) and obj.requires_grad]
            leaf_grads = []
            for i, leaf in leaves:
                g = protocol.unplain(grads.get(i)) if i in grads else None
                if g is not None and (not isinstance(g, torch.Tensor) or g.shape != leaf.shape):
                    raise protocol.ProtocolError("a gradient of the wrong shape")
                leaf_grads.append(None if g is None else g.to(leaf.dtype))
            result = _RemoteScalar.apply(result.detach(), leaf_grads, *(leaf for _, leaf in leaves))
        return result


@dataclasses.dataclass
class Verdict:
    check: str  # "module.check_name", what the cell's hidden block calls
    runs: int = 0
    failure: str | None = None
    mistake: str | None = None  # the name of the typical mistake the check caught (`checks.Mistake`)

    @property
    def passed(self) -> bool:
        return self.runs > 0 and self.failure is None


class CheckServer:
    """Runs one student's hidden checks on request from their sandboxed kernel.

    `expected` maps each test cell's grade_id to the check its hidden block calls. A kernel may
    hold at most `MAX_CONNECTIONS` connections at once (more are closed as they come: a flood of
    them costs the grader no threads), and at most `MAX_STRAY` strays are kept for the report.
    """

    MAX_CONNECTIONS = 8
    MAX_STRAY = 20

    def __init__(self, path: str, expected: dict[str, str], *, timeout: float = 120.0):
        self.path, self.timeout = path, timeout
        self.verdicts = {grade_id: Verdict(check) for grade_id, check in expected.items()}
        self.stray: list[str] = []  # checks asked for outside their own test cell
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        self._current: str | None = None
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(4)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="course-lab-checker")

    def start(self) -> "CheckServer":
        self._thread.start()
        return self

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def enter(self, grade_id: str | None) -> None:
        """nbgrader starts executing the cell `grade_id` (None: a cell without one)."""
        with self._lock:
            self._current = grade_id

    def leave(self) -> None:
        with self._lock:
            self._current = None

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()
                self._stray(f"more than {self.MAX_CONNECTIONS} connections to the checker at once")
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _stray(self, what: str) -> None:
        with self._lock:
            if what not in self.stray and len(self.stray) < self.MAX_STRAY:
                self.stray.append(what)

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._serve_one(conn)
        finally:
            self._slots.release()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.timeout)
            try:
                hello = protocol.receive(conn, trusted=False)
                if not isinstance(hello, dict) or hello.get("op") != "check":
                    return
                check = str(hello.get("check"))[:200]
                with self._lock:
                    cell = self._current
                verdict = self.verdicts.get(cell) if cell else None
                if verdict is None or verdict.check != check:
                    self._stray(f"{check} asked for outside its test cell ({cell or 'no test cell'})")
                    protocol.send(conn, {"op": "done", "passed": False,
                                         "message": "a hidden check runs only in its own test cell"})
                    return
                signature = hello.get("signature") if isinstance(hello.get("signature"), list) else []
                passed, message, mistake = self._run_check(check, RemoteFunction(conn, hello.get("name", "function"),
                                                                                  signature))
                with self._lock:
                    if self._current != cell:  # the cell ended (timeout, interrupt) before the check did
                        passed, message = False, "the hidden check did not finish while its test cell ran"
                    verdict.runs += 1
                    if not passed and verdict.failure is None:
                        verdict.failure, verdict.mistake = message, mistake
                protocol.send(conn, {"op": "done", "passed": passed, "message": message})
            except (OSError, protocol.ProtocolError):
                return

    @staticmethod
    def _run_check(check: str, proxy: RemoteFunction) -> tuple[bool, str, str | None]:
        module_name, _, function_name = check.rpartition(".")
        try:
            module = importlib.import_module(f"course_utils.checks.{module_name}")
            function = getattr(module, function_name)
        except (ImportError, AttributeError):
            return False, f"no hidden check {check}", None
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                function(proxy)
            return True, "", None
        except AssertionError as err:  # a `checks.Mistake` names what it caught
            name = getattr(err, "name", None)
            return False, str(err) or "the hidden check failed", name if isinstance(name, str) else None
        except (OSError, protocol.ProtocolError) as err:
            return False, f"the kernel stopped answering the hidden check ({type(err).__name__})", "no answer"
        except Exception as err:  # the student's answer made the check itself fail
            return False, (f"the hidden check could not use what your function returned ({type(err).__name__}: "
                           f"{err})"), "unusable result"

    def results(self) -> dict:
        with self._lock:
            return {"verdicts": {g: dataclasses.asdict(v) | {"passed": v.passed} for g, v in self.verdicts.items()},
                    "stray": list(self.stray)}
