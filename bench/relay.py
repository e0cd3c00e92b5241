"""The floor under the daemon: relays that only copy bytes between a client and the
addon, no parsing, no journal. Run as its own process by bench/run.py:

    python -m bench.relay --kind trio|selectors --upstream PORT

prints `RELAY <port>` once listening. `trio` uses trio's socket streams (what the
daemon uses); `selectors` is a plain blocking select loop, the cheapest relay Python
can do. Their ratios to the direct round trip show how much of the daemon's overhead
is the event loop itself.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys

import trio

CHUNK = 64 * 1024


def relay_trio(upstream: int) -> None:
    async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)

    async def handle(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", upstream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, server)
            nursery.start_soon(pipe, server, client)

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        print(f"RELAY {listeners[0].socket.getsockname()[1]}", flush=True)
        await trio.serve_listeners(handle, listeners)

    trio.run(main)


def relay_selectors(upstream: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"RELAY {listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        server = socket.create_connection(("127.0.0.1", upstream))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        open_ = True
        while open_:
            for key, _ in selector.select():
                data = key.fileobj.recv(CHUNK)  # type: ignore[union-attr]
                if not data:
                    open_ = False
                    break
                key.data.sendall(data)
        selector.close()
        client.close()
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["trio", "selectors"], required=True)
    parser.add_argument("--upstream", type=int, required=True)
    args = parser.parse_args()
    (relay_trio if args.kind == "trio" else relay_selectors)(args.upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
