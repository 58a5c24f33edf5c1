"""The peer: a bare `websockets` asyncio server, what Switchboard is measured against.

`python -m bench.peer PORT echo`: answers each text frame with `Server received: <text>`
(the seed's echo server). `python -m bench.peer PORT broadcast`: each text frame is sent to
every other connected client (the bare broadcaster for the fan-out figures).
Listens on 127.0.0.1 only; runs until killed.
"""

import asyncio
import sys

import uvloop
from websockets.asyncio.server import broadcast, serve

PREFIX = "Server received: "


async def echo(ws) -> None:
    async for message in ws:
        await ws.send(PREFIX + message if isinstance(message, str) else message)


def broadcaster():
    clients: set = set()

    async def handler(ws) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                broadcast(clients - {ws}, message)
        finally:
            clients.discard(ws)

    return handler


async def main(port: int, mode: str) -> None:
    handler = echo if mode == "echo" else broadcaster()
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20):
        print(f"peer {mode} listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
