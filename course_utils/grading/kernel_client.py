"""The kernel manager and client the graded notebooks' executor uses
(`--ExecutePreprocessor.kernel_manager_class`, `--KernelManager.client_class`).

The client takes no message over `MAX_MESSAGE_BYTES` from a student's kernel.

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
# The largest message the grader takes from a student's kernel: ZeroMQ drops the connection of a
# peer that sends more (and reconnects), so one `print` of a gigabyte never reaches nbgrader's
# memory; the cell then waits for its reply until its time limit. Outputs below this are capped
# per cell and per notebook by nbgrader_run.
MAX_MESSAGE_BYTES = 16 * 2**20


class GradingKernelClient(AsyncKernelClient):
    def _context_default(self) -> zmq.asyncio.Context:
        context = super()._context_default()
        context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)  # for this client's sockets only
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        return context

    def start_channels(self, *args, **kwargs) -> None:
        super().start_channels(*args, **kwargs)
        # ZeroMQ says nothing to the client about a message it refused for its size, except that the
        # IOPub connection drops (and comes back): watch for that, so that the cell can say so
        self._iopub_monitor = self.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def dropped_outputs(self) -> int:
        """How often the IOPub connection dropped since the last call (an output over
        `MAX_MESSAGE_BYTES`, refused)."""
        monitor, count = getattr(self, "_iopub_monitor", None), 0
        while monitor is not None:
            try:
                monitor.recv_multipart(flags=zmq.NOBLOCK, copy=True).result()
            except (zmq.Again, asyncio.InvalidStateError):
                break
            count += 1
        return count

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
