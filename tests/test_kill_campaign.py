"""The SIGKILL campaign: the real daemon killed at random points, several times in one
run, while four clients pipeline commands into two sessions, some of them MiB-sized
(so kills land inside large journal writes too). Clients reconnect and go on. At the
end every acknowledged command is in its session exactly once, with the outcome its
client was told, and each client's commands are in the order it sent them.

CI runs a bounded slice (derandomized: the same kill points each run). A longer run:
KILL_CAMPAIGN_KILLS=20 KILL_CAMPAIGN_COMMANDS=20000 KILL_CAMPAIGN_SEED=$RANDOM \
    ./scripts/test tests/test_kill_campaign.py -s
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from daemon.clients.client import find_endpoint

from .programs import Programs, free_port

pytestmark = pytest.mark.blender
KILLS = int(os.environ.get("KILL_CAMPAIGN_KILLS", "6"))
COMMANDS = int(os.environ.get("KILL_CAMPAIGN_COMMANDS", "4000"))
SEED = int(os.environ.get("KILL_CAMPAIGN_SEED", "12"))
CLIENTS = 4
WINDOW = 8
LARGE_EVERY = 25  # one command in 25 carries ~1 MB of params (execute_code's limit: 1e6)
LARGE_BYTES = 990_000
BOUND_S = 120.0


def marker(client: int, number: int) -> str:
    return f"c{client}-{number}"


def command_params(session_id: str, client: int, number: int) -> dict[str, Any]:
    if number % LARGE_EVERY == LARGE_EVERY - 1:  # execute_code is off: refused, recorded
        code = f"# {marker(client, number)} " + "x" * LARGE_BYTES
        return {"session_id": session_id, "type": "execute_code", "params": {"code": code}}
    return {"session_id": session_id, "type": "create_object",
            "params": {"kind": "empty", "name": marker(client, number)}}  # fmt: skip


@dataclass
class Client:
    """One pipelining client that reconnects when the daemon dies. What was in flight
    then was never acknowledged: it may or may not be recorded, but not twice."""

    number: int
    port: int
    token: str
    session_id: str
    total: int
    acked: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> reply
    lost: set[int] = field(default_factory=set)  # sent, never answered
    reconnects: int = 0
    failure: BaseException | None = None

    def run(self) -> None:
        try:
            sent = 0
            while sent < self.total:
                sent = self._one_connection(sent)
        except BaseException as error:  # reported by the test, with its traceback
            self.failure = error

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + BOUND_S
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.port), timeout=BOUND_S)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # a restarting daemon: a real process, not an event

    def _one_connection(self, sent: int) -> int:
        in_flight: set[int] = set()
        with self._connect() as sock:
            reader = sock.makefile("rb")
            try:
                while sent < self.total or in_flight:
                    burst = []
                    while sent < self.total and len(in_flight) < WINDOW:
                        burst.append(self._line(sent))
                        in_flight.add(sent)
                        sent += 1
                    if burst:
                        sock.sendall(b"".join(burst))
                    line = reader.readline()
                    if not line:
                        raise ConnectionError("daemon gone")
                    reply = json.loads(line)
                    number = reply["id"] - self.number * 1_000_000
                    assert number in in_flight and number not in self.acked, reply
                    in_flight.discard(number)
                    code = reply.get("error", {}).get("code")
                    if code in ("blender_unavailable", "busy"):
                        self.lost.add(number)  # refused before it was sent: no record
                    else:
                        assert code in (None, "forbidden"), reply  # ran, or refused by Blender
                        self.acked[number] = reply
            except (OSError, ConnectionError):
                self.lost |= in_flight
                self.reconnects += 1
        return sent

    def _line(self, number: int) -> bytes:
        request = {"token": self.token, "id": self.number * 1_000_000 + number,
                   "op": "session.command", "client_id": f"campaign-{self.number}",
                   "params": command_params(self.session_id, self.number, number)}  # fmt: skip
        return json.dumps(request).encode() + b"\n"


def test_daemon_killed_again_and_again_mid_stream_loses_no_acknowledged_command(
    programs: Programs,
) -> None:
    rng = random.Random(SEED)
    control_port = free_port()
    programs.start_blender()
    programs.start_daemon("--control-port", str(control_port))
    programs.wait_connected()
    sessions = [programs.json("open", "--name", f"campaign-{n}")["session_id"] for n in range(2)]
    _, port, token = find_endpoint(programs.data_dir)
    clients = [Client(n, port, token, sessions[n % 2], COMMANDS // CLIENTS) for n in range(CLIENTS)]
    threads = [threading.Thread(target=client.run, daemon=True) for client in clients]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    kill_points = sorted(rng.sample(range(COMMANDS // 10, COMMANDS * 9 // 10), KILLS))
    kills = 0
    for point in kill_points:
        deadline = time.monotonic() + BOUND_S
        while sum(len(c.acked) for c in clients) < point:  # progress, not time
            assert time.monotonic() < deadline, (
                "the stream stalled",
                [(len(c.acked), len(c.lost), c.reconnects) for c in clients],
                list(programs.daemon_log)[-15:],
            )
            assert all(c.failure is None for c in clients), [c.failure for c in clients]
            time.sleep(0.01)
        assert programs.daemon is not None
        programs.daemon.send_signal(signal.SIGKILL)
        programs.daemon.wait()
        kills += 1
        programs.start_daemon("--control-port", str(control_port))
    for thread in threads:
        thread.join(BOUND_S * 4)
        assert not thread.is_alive(), "a client stalled"
    assert all(c.failure is None for c in clients), [c.failure for c in clients]

    recorded: dict[str, dict[str, dict[str, Any]]] = {}  # session -> marker -> command
    for session_id in sessions:
        closed = programs.json("close", session_id)
        commands = json.loads(Path(closed["path"]).read_text())["data"]["commands"]
        by_marker: dict[str, dict[str, Any]] = {}
        for command in commands:
            params = command["params"]
            mark = params["name"] if "name" in params else params["code"].split(" ")[1]
            assert mark not in by_marker, f"{mark} recorded twice"
            by_marker[mark] = command
        recorded[session_id] = by_marker
    acked_total = 0
    for client in clients:
        in_session = recorded[client.session_id]
        seqs = []
        for number in sorted(client.acked):
            reply = client.acked[number]
            command = in_session.get(marker(client.number, number))
            assert command is not None, f"acknowledged {marker(client.number, number)} lost"
            expected = "success" if reply["ok"] else "error"
            assert command["status"] == expected, (command["status"], reply)
            seqs.append(command["seq"])
        assert seqs == sorted(seqs), f"client {client.number}: out of order"
        acked_total += len(client.acked)
    recorded_total = sum(len(r) for r in recorded.values())
    assert acked_total >= COMMANDS * 0.9
    # Beyond the acknowledged ones, only commands in flight at a kill were recorded.
    assert recorded_total - acked_total <= sum(len(c.lost) for c in clients)
    print(
        f"kill campaign: {kills} SIGKILLs, {COMMANDS} commands "
        f"({COMMANDS // LARGE_EVERY} of ~1 MB), {acked_total} acknowledged and all recorded, "
        f"{recorded_total - acked_total} more recorded of {sum(len(c.lost) for c in clients)} "
        f"in flight at a kill, {sum(c.reconnects for c in clients)} reconnects, "
        f"{time.monotonic() - began:.1f} s"
    )
