"""What a student's function did to its arguments, and whether the exercise allows it.

The rule of every hidden check (`call_student` applies it to every call): a check judges only
what the function computed. Before the call the state of each argument is taken (the same
plain data the grading wire carries: `protocol.capture_state`); after it, the state the
function left (in the sandboxed kernel, or here) is compared with it, aspect by aspect. A
change the exercise does not allow (`may_change`) fails the check with a message that says
what changed, before anything of it reaches the checker's own objects. So an attack that
zeroes the model's weights, a loss that normalizes its input in place, or a training step
that lowers the learning rate is caught here, once, for every check; and the references a
check computes after the call use objects no student code has changed (or, where changes
are allowed, the copies the check took before the call).

Aspects, by kind of argument:

- tensor: ``values`` (changed in place), ``requires_grad``, ``grad``;
- module: ``mode`` (train/eval of any submodule), ``parameters``, ``buffers`` (BatchNorm's
  running statistics), ``grads`` (the parameters' ``.grad``), ``recorded`` (what a recording
  fixture keeps: `proxy_state`);
- optimizer: ``state`` (momentum and the like), ``settings`` (param_groups: the learning
  rate, ...), ``recorded``;
- generator: ``state``; list: ``contents``.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Iterable

import torch

from ..grading import protocol

ASPECTS = {
    "tensor": ("values", "requires_grad", "grad"),
    "module": ("mode", "parameters", "buffers", "grads", "recorded"),
    "optimizer": ("state", "settings", "recorded"),
    "generator": ("state",),
    "list": ("contents",),
    "none": (),
}


def snapshot(objects: list) -> list[dict]:
    """The state of each argument before the call (plain data, independent of the objects)."""
    return [protocol.capture_state(obj) for obj in objects]


def _same(a: Any, b: Any) -> bool:
    """Plain data equal, tensors bit for bit (a NaN equals itself, -0.0 differs from 0.0)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.is_floating_point() or a.is_complex():
            return torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8))
        return torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _field(state: Any, key: str) -> Any:
    if not isinstance(state, dict) or key not in state:
        raise protocol.ProtocolError(f"the state of an argument came back without its {key!r}")
    return state[key]


def changes(obj: Any, before: dict, after: dict) -> dict[str, list[str]]:
    """aspect -> what changed in it (names of parameters, buffers, ...; empty for a whole)."""
    kind = _field(before, "kind")
    if _field(after, "kind") != kind:
        raise protocol.ProtocolError("the state of an argument does not match it")
    found: dict[str, list[str]] = {}
    if kind == "tensor":
        value_before, value_after = _field(before, "value"), _field(after, "value")
        if not (isinstance(value_before, dict) and isinstance(value_after, dict)):
            raise protocol.ProtocolError("a tensor's state without its value")
        if not _same(value_before.get("__tensor__"), value_after.get("__tensor__")):
            found["values"] = []
        if bool(value_before.get("requires_grad")) != bool(value_after.get("requires_grad")):
            found["requires_grad"] = []
        if not _same(_field(before, "grad"), _field(after, "grad")):
            found["grad"] = []
    elif kind == "module":
        if not _same(_field(before, "training"), _field(after, "training")):
            found["mode"] = []
        parameters = {name for name, _ in obj.named_parameters()}
        state_before, state_after = _field(before, "state"), _field(after, "state")
        if not isinstance(state_after, dict):
            raise protocol.ProtocolError("a module's state came back as something else")
        for key in sorted(state_before.keys() | state_after.keys()):  # an entry added or removed is a change too
            if key not in state_before or key not in state_after or not _same(state_before[key], state_after[key]):
                found.setdefault("parameters" if key in parameters else "buffers", []).append(str(key)[:60])
        if not _same(_field(before, "grads"), _field(after, "grads")):
            found["grads"] = []
        if not _same(_field(before, "extra"), _field(after, "extra")):
            found["recorded"] = []
    elif kind == "optimizer":
        state_before, state_after = _field(before, "state"), _field(after, "state")
        if not _same(_field(state_before, "state"), _field(state_after, "state")):
            found["state"] = []
        if not _same(_field(state_before, "param_groups"), _field(state_after, "param_groups")):
            found["settings"] = []
        if not _same(_field(before, "extra"), _field(after, "extra")):
            found["recorded"] = []
    elif kind == "generator":
        if not _same(_field(before, "state"), _field(after, "state")):
            found["state"] = []
    elif kind == "list":
        if not _same(_field(before, "value"), _field(after, "value")):
            found["contents"] = []
    return found


def argument_names(function: Callable, args: tuple, kwargs: dict, objects: list) -> list[str]:
    """A name for each stateful argument, as the student's function calls it (its signature),
    else by position."""
    bound: dict[int, str] = {}
    try:
        signature = inspect.signature(function)
        arguments = signature.bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        arguments = {f"argument {i + 1}": a for i, a in enumerate(args)} | dict(kwargs)
    for name, value in arguments.items():
        label = re.sub(r"[^\w ]", "_", str(name))[:40]
        for inner in protocol.stateful(value):
            bound.setdefault(id(inner), label if inner is value else f"an element of {label}")
    return [bound.get(id(obj), f"argument {i + 1}") for i, obj in enumerate(objects)]


def _describe(aspect: str, detail: list[str], name: str, obj: Any, before: dict, after: dict) -> str:
    keys = f" ({', '.join(detail[:4])}{', ...' if len(detail) > 4 else ''})" if detail else ""
    if aspect == "values":
        return (f"changed its input {name} in place; work on a copy (x.clone()) and use out-of-place operations "
                "(x_adv = x_adv + ..., not x_adv += ... on the input itself)")
    if aspect == "requires_grad":
        return (f"switched requires_grad of its input {name}; take the gradient on a copy: "
                "x.clone().detach().requires_grad_(True)")
    if aspect == "grad":
        return f"changed the .grad of {name} (did it call backward()?); leave its gradient as it was"
    if aspect == "mode":
        now_training = any(after["training"]) and not any(before["training"])
        return (f"left {name} in train mode" if now_training else f"changed the train/eval mode of {name}") + (
            "; leave the model in the mode it was given (a function that needs another mode restores the old "
            "one: was_training = model.training ... model.train(was_training))")
    if aspect == "parameters":
        return f"changed the parameters of {name}{keys}; the model's weights are not the function's to change"
    if aspect == "buffers":
        return (f"changed the buffers of {name}{keys}, e.g. BatchNorm's running statistics: did it run the model "
                "in train mode? Leave the model in the mode it was given")
    if aspect == "grads":
        return (f"changed the parameters' .grad of {name}: did it call loss.backward() or model.zero_grad()? "
                "The gradient with respect to the input alone is grad = torch.autograd.grad(loss, x_adv)[0], "
                "which leaves the parameters' gradients alone")
    if aspect == "recorded":
        return f"changed what {name} records of its use; leave the object's own attributes alone"
    if aspect == "settings":
        return f"changed the settings of {name} (its param_groups: learning rate and the like)"
    if aspect == "state":
        return f"changed the state of {name}"
    if aspect == "contents":
        return f"changed the list {name} in place (sorted, appended to, ...); work on a copy"
    return f"changed {name}"


def judge(function_name: str, objects: list, names: list[str], before: list[dict], after: list,
          may_change: dict[int, Iterable[str]], what: str) -> None:
    """Raise AssertionError for the first change the exercise does not allow; ProtocolError for
    a state that does not fit its argument. `may_change`: id(argument) -> allowed aspects."""
    if not isinstance(after, list) or len(after) != len(objects):
        raise protocol.ProtocolError("the arguments' state does not match the arguments")
    for obj, name, old, new in zip(objects, names, before, after):
        allowed = set(may_change.get(id(obj), ()))
        for aspect, detail in changes(obj, old, new).items():
            if aspect not in allowed:
                raise AssertionError(f"{function_name} {_describe(aspect, detail, name, obj, old, new)} ({what})")
