"""The kernel manager and client the graded notebooks' executor uses
(`--ExecutePreprocessor.kernel_manager_class`, `--KernelManager.client_class`).

Three of the waits around a kernel are timers, not events, and each cost every one of a
student's 8 kernels a fraction of a second in which nothing at all runs (on a box that grades
on every core, a core left idle):

- The client connects its sockets as soon as the kernel's process is launched, before the
  kernel has bound its IPC sockets; ZeroMQ then retries each connection every 100 ms (its
  RECONNECT_IVL), and a kernel ready in between waited for the next retry (about 50 ms per
  kernel, measured). `GradingKernelClient`'s sockets retry every `RECONNECT_MS` (a failed
  connect to a Unix socket costs microseconds).
- `wait_for_ready` ends its start-up handshake by draining IOPub until it has been quiet for
  0.2 s. The executor never needs that drain: nbclient takes a message as a cell's output
  only if its parent is that cell's request. `GradingKernelClient` does the same handshake
  (kernel_info answered on the shell channel, IOPub connected) and stops there.
- `shutdown_kernel(now=True)` kills the kernel's process, then polls it every 0.1 s until it
  is gone: 0.11 s per kernel, almost all of it the first sleep. `GradingKernelManager` waits
  for the process's exit itself (a pidfd, readable when it exits) and then lets jupyter_client
  reap it as before.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from queue import Empty

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

RECONNECT_MS = 10


class GradingKernelClient(AsyncKernelClient):
    def _context_default(self) -> zmq.asyncio.Context:
        context = super()._context_default()
        context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)  # for this client's sockets only
        return context

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.time() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                pass
            else:
                if msg["msg_type"] == "kernel_info_reply":
                    try:
                        await self.iopub_channel.get_msg(timeout=0.2)  # IOPub is connected
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(msg)
                        return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.time() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    wait_for_ready = _async_wait_for_ready


class GradingKernelManager(AsyncKernelManager):
    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Until the kernel's process has exited: woken by its exit, not by a 0.1 s timer."""
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.returncode is None:
            with contextlib.suppress(OSError, AttributeError):  # (no pidfd here: the timer, as before)
                fd = os.pidfd_open(process.pid)
                loop = asyncio.get_running_loop()
                try:
                    exited = loop.create_future()
                    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
                    try:
                        await exited
                    finally:
                        loop.remove_reader(fd)
                finally:
                    os.close(fd)
        await super()._async_wait(pollinterval)  # reaps it (returns at once once it has exited)
