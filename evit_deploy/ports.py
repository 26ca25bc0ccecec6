"""Listening TCP sockets for the servers we start: bind one (a busy port is a one-line error), or pick a free port."""

from __future__ import annotations

import socket

from .errors import EvitError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EvitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port(host: str) -> int:
    """A port that is free on ``host`` now (another process may take it before it is used)."""
    sock = bind(host, 0)
    try:
        return sock.getsockname()[1]
    finally:
        sock.close()
