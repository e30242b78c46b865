"""Serving the app with uvicorn: the port is bound first (a port in use is a one-line error),
the background refitter runs beside it, and SIGINT/SIGTERM shut down gracefully (uvicorn stops
accepting, lets requests in flight finish, then the app stops the refitter and the database)."""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket
import sys
from typing import Any

from prefkit.studio.errors import StudioError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a :class:`StudioError` that says what to do."""
    if not 0 <= port <= 65535:
        raise StudioError(f"port must be in 0..65535, got {port}", field="port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise StudioError(f"cannot resolve host {host!r}: {err.strerror}", field="host") from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise StudioError(f"port {port} on {host} is already in use; pass --port with a free port "
                              "(or stop the other server)", field="port") from err
        if err.errno in (errno.EACCES, errno.EPERM):
            raise StudioError(f"no permission to listen on {host}:{port}; use a port above 1023",
                              field="port") from err
        raise StudioError(f"cannot listen on {host}:{port}: {err.strerror}", field="host") from err
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Run ``app`` on the bound socket until SIGINT/SIGTERM."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, server_header=False)
    server = uvicorn.Server(config)
    received: list[int] = []
    # uvicorn shuts down on SIGINT/SIGTERM, then re-raises the signal under the handlers that were
    # installed before it ran: these record it, so a graceful stop ends with exit status 0.
    previous = {sig: signal.signal(sig, lambda number, _frame: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise StudioError("the server did not start (see the log above)")
    if received:
        print(f"prefkit studio: stopped ({signal.Signals(received[0]).name}); every acknowledged vote is stored",
              file=sys.stderr, flush=True)
