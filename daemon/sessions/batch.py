"""`session.batch`: many scene commands in one request, through the one command path
in order, each recorded with its own seq as if sent alone."""

from __future__ import annotations

import trio

from ..protocol import ProtocolError
from ..protocol.messages import ErrorBody
from ..protocol.ops import BatchCommand, BatchItem, BatchResult, CommandResult
from ..store import JournalBatch
from .command_path import CommandPath, Reply
from .session import Session

# Commands of one batch in flight at once (as a replay keeps them).
BATCH_WINDOW = 64


async def run_batch(
    path: CommandPath,
    journals: JournalBatch,
    session: Session,
    commands: list[BatchCommand],
    stop_on_error: bool,
    client_id: str | None,
) -> BatchResult:
    """BATCH_WINDOW in flight; with `stop_on_error` one at a time, so that none is sent
    after the first that fails (those are `skipped`)."""
    results: list[BatchItem | None] = [None] * len(commands)
    window = trio.Semaphore(1 if stop_on_error else BATCH_WINDOW)
    stopped = False
    outstanding = 0
    sending_done = False
    all_in = trio.Event()

    def replied(index: int) -> Reply:
        def reply(answer: CommandResult | ProtocolError) -> None:
            nonlocal stopped, outstanding
            window.release()
            if isinstance(answer, ProtocolError):
                body = ErrorBody(code=answer.code.value, message=answer.message)
                results[index] = BatchItem(index=index, status="error", error=body)
                stopped = stopped or stop_on_error
            else:
                results[index] = BatchItem(
                    index=index, status=answer.status, seq=answer.seq, result=answer.result
                )
            outstanding -= 1
            if outstanding == 0 and sending_done:
                all_in.set()

        return reply

    for index, command in enumerate(commands):
        await window.acquire()
        if stopped:
            window.release()
            results[index] = BatchItem(index=index, status="skipped")
            continue
        outstanding += 1
        path.submit(session, command.type, command.params, client_id, replied(index))
        journals.flush()  # sends it: this task is no reader
    sending_done = True
    if outstanding == 0:
        all_in.set()
    await all_in.wait()
    done = [item for item in results if item is not None]
    return BatchResult(
        session_id=session.session_id,
        results=done,
        succeeded=sum(1 for item in done if item.status == "success"),
        failed=sum(1 for item in done if item.status == "error"),
        skipped=sum(1 for item in done if item.status == "skipped"),
    )
