"""WebSocket frames by hand over a plain TCP socket, for what `websockets` will not do: send
invalid UTF-8 or a non-ASCII header, or keep writing while never reading."""

import base64
import os
import socket
import struct
import time
from dataclasses import dataclass

from tests.system.stack import Worker

OP_CONT, OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Frame:
    """One frame the server sent."""

    opcode: int
    payload: bytes

    @property
    def close(self) -> tuple[int, str]:
        """(code, reason) of a close frame."""
        assert self.opcode == OP_CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode()


def frame_build(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One masked client frame, final unless `fin` is False (payload under 64 KiB)."""
    mask = os.urandom(4)
    length = len(payload)
    header = bytes([(0x80 if fin else 0) | opcode])
    header += (
        bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + struct.pack("!H", length)
    )
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def frames_parse(data: bytes) -> tuple[list[Frame], bytes]:
    """The complete unmasked server frames at the start of `data`, and what is left over."""
    frames, at = [], 0
    while len(data) - at >= 2:
        length, start = data[at + 1] & 0x7F, at + 2
        if length == 126:
            if len(data) - at < 4:
                break
            length, start = struct.unpack("!H", data[at + 2 : at + 4])[0], at + 4
        elif length == 127:
            if len(data) - at < 10:
                break
            length, start = struct.unpack("!Q", data[at + 2 : at + 10])[0], at + 10
        if len(data) < start + length:
            break
        frames.append(Frame(data[at] & 0x0F, bytes(data[start : start + length])))
        at = start + length
    return frames, bytes(data[at:])


def handshake_send(
    worker: Worker, path: str, headers: tuple[bytes, ...] = (), *, timeout: float = 10.0
) -> tuple[socket.socket, bytes, bytes]:
    """Open a TCP connection and send an upgrade request for `path` with extra header lines:
    the socket, the response head (status line and headers) and the bytes after it."""
    sock = socket.create_connection(("127.0.0.1", worker.port), timeout=timeout)
    key = base64.b64encode(os.urandom(16))
    request = [
        b"GET " + path.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1:" + str(worker.port).encode(),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        *headers,
    ]
    sock.sendall(b"\r\n".join(request) + b"\r\n\r\n")
    received = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in received and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return sock, head, rest


def received_until_closed(
    sock: socket.socket, *, within: float = 15.0, limit: int = 4 * 1024 * 1024
) -> tuple[bytes, bool]:
    """Read what the server sends, at most `limit` bytes and `within` seconds: the bytes, and
    whether the server closed (or reset) the TCP connection meanwhile."""
    sock.settimeout(0.5)
    received = bytearray()
    deadline = time.monotonic() + within
    while len(received) < limit and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return bytes(received), True
        if not chunk:
            return bytes(received), True
        received += chunk
    return bytes(received), False
