"""The kernel client the graded notebooks' executor uses (`--KernelManager.client_class`).

jupyter_client's `wait_for_ready` ends its start-up handshake by draining IOPub until it has
been quiet for 0.2 s: 0.2 s of waiting for nothing in each of a student's 8 kernels. The
executor never needs that drain: nbclient takes a message as a cell's output only if its
parent is that cell's request. This client does the same handshake (kernel_info answered on
the shell channel, IOPub connected) and stops there.
"""
from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient


class GradingKernelClient(AsyncKernelClient):
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
