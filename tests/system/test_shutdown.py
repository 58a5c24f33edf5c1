"""SIGTERM on daphne: a draining worker refuses new connections (the close codes, records and
exit on every server: tests/system/test_servers.py)."""

import base64
import os
import signal
import socket

import pytest


def raw_websocket(worker, path: str) -> socket.socket:
    """A WebSocket opened by hand that will never answer the server's close frame."""
    sock = socket.create_connection(("127.0.0.1", worker.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{worker.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock


def test_a_stopping_worker_refuses_new_connections_while_it_drains(start_worker):
    worker = start_worker()
    holdout = raw_websocket(worker, "/ws/echo/")  # keeps the worker draining for its grace
    try:
        worker.proc.send_signal(signal.SIGTERM)
        worker.output_wait("shutting down: closed 1 WebSocket(s) with 1001")
        assert worker.proc.poll() is None  # still draining
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", worker.port), timeout=5).close()
    finally:
        holdout.close()
    worker.proc.wait(timeout=15)
