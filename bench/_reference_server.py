"""The least a Python asyncio Unix server can do per request: the burst benchmark's ceiling.

    python bench/_reference_server.py SOCKET REPLY_FILE

Accepts connections on SOCKET, reads one length-prefixed frame from each, answers with the
bytes of REPLY_FILE as one frame and closes: no peer check, no decoding, no audit.  It prints
``ready`` once listening and runs until killed.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

HEADER = 4


async def _serve(listener: socket.socket, reply: bytes) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    while True:
        conn, _ = await loop.sock_accept(listener)
        task = loop.create_task(_answer(conn, reply))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _answer(conn: socket.socket, reply: bytes) -> None:
    loop = asyncio.get_running_loop()
    with conn:
        head = await loop.sock_recv(conn, HEADER)
        want = int.from_bytes(head, "big") if len(head) == HEADER else 0
        got = 0
        while got < want:
            chunk = await loop.sock_recv(conn, want - got)
            if not chunk:
                return
            got += len(chunk)
        await loop.sock_sendall(conn, reply)


def main(argv: list[str]) -> int:
    path, reply_file = argv
    body = Path(reply_file).read_bytes()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    print("ready", flush=True)
    asyncio.run(_serve(listener, len(body).to_bytes(HEADER, "big") + body))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
