"""A scripted line server for net: filter and verifier tests (runs in a thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class LineServer:
    """Answers each request line with ``handler(line)``.

    The handler returns the response line, or None to drop the connection without
    answering (a server that disconnects mid-request).  ``connections`` counts
    accepted connections and ``requests`` records every request line.
    """

    def __init__(self, handler: Callable[[str], str | None], path: str | None = None) -> None:
        self.handler = handler
        self.requests: list[str] = []
        self.connections = 0
        if path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(path)
            self.address = path
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(16)
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, conn.makefile("rwb") as f:
            for raw in f:
                line = raw.decode().rstrip("\r\n")
                self.requests.append(line)
                response = self.handler(line)
                if response is None:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                f.write(response.encode() + b"\n")
                f.flush()

    def drop_connections(self) -> None:
        """Close every open connection (as a restarted server would)."""
        for conn in self._clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._clients.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        self.drop_connections()
