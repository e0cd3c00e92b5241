"""The addon's main-thread queue, without Blender: it is standard library only."""

from __future__ import annotations

import threading

from blender_addon.mainthread import MainThreadQueue


def test_drain_runs_everything_queued_and_returns_at_once_when_empty() -> None:
    jobs = MainThreadQueue()
    ran: list[int] = []
    for number in range(3):
        jobs.submit(lambda number=number: ran.append(number))
    assert jobs.drain() == 3
    assert ran == [0, 1, 2]
    assert jobs.drain(linger_s=5.0) == 0  # nothing ran: no lingering on an idle tick


def test_linger_serves_a_job_that_arrives_from_another_thread_in_the_same_drain() -> None:
    """What a pipelining client does: its next request comes in from the I/O thread
    while the main thread waits after the previous one."""
    jobs = MainThreadQueue()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        threading.Thread(target=jobs.submit, args=(lambda: ran.append("second"),)).start()

    jobs.submit(first)
    assert jobs.drain(linger_s=0.5) == 2
    assert ran == ["first", "second"]
