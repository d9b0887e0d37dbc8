"""A threaded TCP echo server on 127.0.0.1: the upstream of the fault proxy in the proxy's and the
local injector's tests (one copy, so both measure against the same server)."""

from __future__ import annotations

import socket
import threading


class EchoServer:
    """A threaded echo server on 127.0.0.1 (the proxy's upstream)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr: tuple[str, int] = self.sock.getsockname()[:2]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c: socket.socket) -> None:
        with c:
            try:
                while d := c.recv(65536):
                    c.sendall(d)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
