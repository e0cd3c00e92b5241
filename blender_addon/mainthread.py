"""The thread boundary: the I/O side submits jobs, Blender's main thread drains them.

Only the main thread may touch `bpy` (a second thread touching bpy data crashed
Blender 3 times out of 3 here), so every scene command becomes a job here. The main
thread calls `drain()` from a `bpy.app.timers` timer in a GUI Blender, or from the
pump loop in a headless one, where timers never fire.

Standard library only; no bpy in this module.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

# The main thread counts as busy once it has not come back to drain the queue for
# this long: a command, a render, or a heavy operator of the user's is running.
BUSY_AFTER_S = 0.25
# In a GUI Blender, stop a drain after this long and leave the rest for the next tick
# (a few milliseconds later), so a stream of requests cannot freeze the interface: it
# still redraws at least ~20 times a second.
GUI_DRAIN_BUDGET_S = 0.05
# In a GUI Blender, after the last job of a drain, wait this long for the next one
# before handing the main thread back. Waiting releases the GIL, so the I/O threads
# send the replies and take in the client's next requests meanwhile; a client that
# answers within it is served in the same tick instead of one Blender sleep (~5 ms)
# later. A drain with no jobs does not wait.
GUI_LINGER_S = 0.003

Job = Callable[[], None]


class MainThreadQueue:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        # When the main thread last came back to the queue (monotonic seconds). Read by
        # the I/O thread for `ping`; a float assignment is atomic under the GIL.
        self.last_tick = time.monotonic()

    def submit(self, job: Job) -> None:
        """Runs on: any thread. `job` runs later on the main thread and must not raise."""
        self._jobs.put(job)

    def depth(self) -> int:
        return self._jobs.qsize()

    def status(self) -> tuple[bool, float, int]:
        """(busy, busy_for_ms, queue_depth), for `ping`. Runs on: any thread."""
        idle_for = time.monotonic() - self.last_tick
        busy = idle_for > BUSY_AFTER_S
        return busy, round(idle_for * 1000, 1) if busy else 0.0, self._jobs.qsize()

    def drain(
        self, wait_s: float = 0.0, budget_s: float | None = None, linger_s: float = 0.0
    ) -> int:
        """Run every queued job. Runs on: main thread.

        `wait_s` > 0 blocks up to that long for the first job (the pump loop: no sleep
        polling). `budget_s` stops early and leaves the rest for the next call.
        `linger_s` > 0 waits that long for another job once the queue is empty.
        Returns how many jobs ran.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("MainThreadQueue.drain() must run on Blender's main thread")
        self.last_tick = time.monotonic()
        ran = 0
        try:
            job = self._jobs.get(timeout=wait_s) if wait_s > 0 else self._jobs.get_nowait()
        except queue.Empty:
            self.last_tick = time.monotonic()
            return 0
        started = time.monotonic()
        while True:
            job()
            ran += 1
            self.last_tick = time.monotonic()
            if budget_s is not None and self.last_tick - started > budget_s:
                return ran
            try:
                job = self._jobs.get(timeout=linger_s) if linger_s > 0 else self._jobs.get_nowait()
            except queue.Empty:
                return ran
