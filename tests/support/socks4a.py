"""A minimal SOCKS 4a proxy for tests: it records the host name it was asked for.

Written by hand: it has to record the host name it is asked for, which proves that
the name (not an address) went to the proxy; microsocks only speaks SOCKS 5.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading

from tests.support.relay import free_port


class Socks4aProxy:
    def __init__(self, resolve: dict[str, str]) -> None:
        self.resolve = resolve  # host name -> IP address, the proxy's own "DNS"
        self.requests: list[tuple[str, int]] = []
        self.port = free_port()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Socks4aProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, client: socket.socket) -> None:
        head = _read(client, 8)
        version, command, port = struct.unpack("!BBH", head[:4])
        _read_string(client)  # user id
        host = socket.inet_ntoa(head[4:8])
        if head[4:7] == b"\0\0\0" and head[7] != 0:  # 4a: the name follows
            host = _read_string(client).decode()
        self.requests.append((host, port))
        target = self.resolve.get(host, host)
        if version != 4 or command != 1:
            client.sendall(b"\0\x5b" + b"\0" * 6)
            return
        try:
            upstream = socket.create_connection((target, port), timeout=5)
        except OSError:
            client.sendall(b"\0\x5b" + b"\0" * 6)
            return
        client.sendall(b"\0\x5a" + b"\0" * 6)
        _relay(client, upstream)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("short read")
        data += chunk
    return data


def _read_string(sock: socket.socket) -> bytes:
    out = b""
    while (c := sock.recv(1)) not in (b"\0", b""):
        out += c
    return out


def _relay(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join(10)
