"""The wire between a sandboxed kernel and the trusted checker: framing and plain data.

A hidden check runs in the checker process, outside the sandbox; the student's function runs
in the kernel. Each call crosses this wire twice:

- checker -> kernel: the arguments, pickled (`torch.save`). The kernel trusts the checker.
- kernel -> checker: the result and the arguments' state after the call, as *plain data*
  only: numbers, strings, None, tuples, lists, dicts and tensors, loaded with
  `torch.load(weights_only=True)` and a size limit. Nothing the kernel sends is ever
  unpickled into an object with behaviour, so a kernel can change the answers it gives,
  never the code that judges them.

`capture_state` (kernel side) and `mirror_state` (checker side) walk the arguments in the
same order and move what a check looks at: a changed input tensor, a module's mode,
parameters, buffers and `.grad`, an optimizer's state, a generator's state, and the
attributes a fixture declares in `proxy_state` (e.g. the forward passes it recorded).
"""
from __future__ import annotations

import io
import re
import socket
import struct
from typing import Any

import torch
from torch import nn

MAX_MESSAGE_BYTES = 64 * 2**20
_HEADER = struct.Struct("!Q")


class ProtocolError(RuntimeError):
    """A malformed, oversized or unexpected message."""


class Opaque:
    """Stands for a value of a type that does not cross the wire; named after that type so
    that a check's "got <type>" message reads as it would in the student's kernel."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def opaque(type_name: str) -> Opaque:
    name = re.sub(r"\W", "_", str(type_name))[:60] or "object"
    if name[0].isdigit():
        name = "_" + name
    return type(name, (Opaque,), {})()


# --------------------------------------------------------------------------- framing

def send(sock: socket.socket, message: Any) -> None:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 2**20))
        if not chunk:
            raise ProtocolError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket, *, trusted: bool) -> Any:
    """One message; `trusted=False` (the checker reading the kernel) allows plain data only."""
    (size,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {size} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    data = _exactly(sock, size)
    try:
        return torch.load(io.BytesIO(data), weights_only=not trusted, map_location="cpu")
    except Exception as err:  # the restricted unpickler raises several types
        raise ProtocolError(f"unreadable message ({type(err).__name__})") from None


# --------------------------------------------------------------------------- plain data (kernel side)

def plain(value: Any, depth: int = 0) -> Any:
    """`value` as data that `torch.load(weights_only=True)` reads; other types become a
    {"__opaque__": type name} marker."""
    if depth > 20:
        return {"__opaque__": "deeply_nested"}
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        tensor = value.detach().as_subclass(torch.Tensor)
        if tensor.layout != torch.strided or tensor.is_quantized:
            return {"__opaque__": type(value).__name__}
        return {"__tensor__": tensor.cpu().clone(), "requires_grad": bool(value.requires_grad)}
    # subclasses (numpy's float64 is a float) cross as the builtin type they are an instance of
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if type(value) in (tuple, list):
        items = [plain(v, depth + 1) for v in value]
        return tuple(items) if type(value) is tuple else items
    if type(value) is dict and all(type(k) in (str, int) for k in value):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value)}
    return {"__opaque__": type(value).__name__}


def unplain(value: Any) -> Any:
    """The checker's reading of `plain` data: tensors rebuilt, markers turned into stand-ins."""
    if isinstance(value, dict):
        if "__tensor__" in value:
            tensor = value["__tensor__"]
            if not isinstance(tensor, torch.Tensor):
                raise ProtocolError("a tensor marker without a tensor")
            tensor = tensor.as_subclass(torch.Tensor).clone()
            if value.get("requires_grad") and (tensor.is_floating_point() or tensor.is_complex()):
                tensor.requires_grad_(True)
            return tensor
        if "__opaque__" in value:
            return opaque(value["__opaque__"])
        if "__dtype__" in value:
            name = str(value["__dtype__"]).removeprefix("torch.")
            dtype = getattr(torch, name, None)
            return dtype if isinstance(dtype, torch.dtype) else opaque("dtype")
        return {k: unplain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(unplain(v) for v in value)
    if isinstance(value, list):
        return [unplain(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor).clone()
    raise ProtocolError(f"unexpected {type(value).__name__} in a message")


# --------------------------------------------------------------------------- arguments' state

def stateful(value: Any, found: list | None = None, depth: int = 0) -> list:
    """The objects inside `value` whose state a call can change, in a fixed order."""
    found = [] if found is None else found
    if depth > 10:
        return found
    if isinstance(value, (torch.Tensor, nn.Module, torch.optim.Optimizer, torch.Generator)):
        found.append(value)
    elif isinstance(value, (tuple, list)):
        if type(value) is list:  # a list of numbers can be changed in place (sorted, appended to)
            found.append(value)
        for v in value:
            stateful(v, found, depth + 1)
    elif isinstance(value, dict):
        for v in value.values():
            stateful(v, found, depth + 1)
    return found


def gradients_of(obj: Any) -> Any:
    """Checker side: the `.grad`s that pickling drops (a tensor's, a module's parameters')."""
    if isinstance(obj, torch.Tensor):
        return obj.grad
    if isinstance(obj, nn.Module):
        return [p.grad for p in obj.parameters()]
    return None


def restore_gradients(obj: Any, grads: Any) -> None:
    """Kernel side: put back what `gradients_of` took."""
    if isinstance(obj, torch.Tensor) and grads is not None:
        obj.grad = grads
    elif isinstance(obj, nn.Module) and grads is not None:
        for p, g in zip(obj.parameters(), grads):
            p.grad = g


def _extra(obj: Any) -> dict:
    return {name: plain(getattr(obj, name, None)) for name in getattr(type(obj), "proxy_state", ())}


def capture_state(obj: Any) -> dict:
    """Kernel side: what a check may look at after the call, as plain data."""
    if isinstance(obj, torch.Tensor):
        return {"kind": "tensor", "value": plain(obj), "grad": plain(obj.grad)}
    if isinstance(obj, nn.Module):
        return {"kind": "module", "training": [bool(m.training) for m in obj.modules()],
                "state": {k: plain(v) for k, v in obj.state_dict().items()},
                "grads": [plain(p.grad) for p in obj.parameters()],
                "extra": [_extra(m) for m in obj.modules()]}
    if isinstance(obj, torch.optim.Optimizer):
        return {"kind": "optimizer", "state": plain(obj.state_dict()), "extra": _extra(obj)}
    if isinstance(obj, torch.Generator):
        return {"kind": "generator", "state": plain(obj.get_state())}
    if type(obj) is list:
        return {"kind": "list", "value": plain(obj) if all(type(v) in (bool, int, float, str) for v in obj) else None}
    return {"kind": "none"}


def _tensor(value: Any) -> torch.Tensor | None:
    value = unplain(value)
    if value is not None and not isinstance(value, torch.Tensor):
        raise ProtocolError("expected a tensor")
    return value


def mirror_state(obj: Any, state: dict) -> None:
    """Checker side: make `obj` what the kernel's copy became during the call."""
    if not isinstance(state, dict) or state.get("kind") != _kind(obj):
        raise ProtocolError("the state of an argument does not match it")
    with torch.no_grad():
        if isinstance(obj, torch.Tensor):
            value = _tensor(state["value"]).to(obj.dtype)
            if value.shape == obj.shape:
                if not torch.equal(value, obj.detach()):
                    obj.copy_(value)
            else:
                obj.data = value
            obj.grad = _tensor(state["grad"])
        elif isinstance(obj, nn.Module):
            modules = list(obj.modules())
            for m, training, extra in zip(modules, state["training"], state["extra"]):
                m.training = bool(training)
                for name in getattr(type(m), "proxy_state", ()):
                    if name in extra:
                        setattr(m, name, unplain(extra[name]))
            own = obj.state_dict()
            for key, value in state["state"].items():
                if key in own:
                    value = _tensor(value)
                    if value.shape != own[key].shape:
                        raise ProtocolError(f"the function changed the shape of {key}")
                    own[key].copy_(value)
            for p, grad in zip(obj.parameters(), state["grads"]):
                p.grad = _tensor(grad)
        elif isinstance(obj, torch.optim.Optimizer):
            obj.load_state_dict(unplain(state["state"]))
            for name in getattr(type(obj), "proxy_state", ()):
                if name in state["extra"]:
                    setattr(obj, name, unplain(state["extra"][name]))
        elif type(obj) is list:
            value = state["value"]
            if value is not None:
                if not isinstance(value, list) or not all(type(v) in (bool, int, float, str) for v in value):
                    raise ProtocolError("a list of numbers came back as something else")
                obj[:] = value
        elif isinstance(obj, torch.Generator):
            new = _tensor(state["state"])
            if new.dtype != torch.uint8 or new.shape != obj.get_state().shape:
                raise ProtocolError("not a generator state")
            obj.set_state(new)


def _kind(obj: Any) -> str:
    for kind, cls in (("tensor", torch.Tensor), ("module", nn.Module), ("optimizer", torch.optim.Optimizer),
                      ("generator", torch.Generator)):
        if isinstance(obj, cls):
            return kind
    return "list" if type(obj) is list else "none"
