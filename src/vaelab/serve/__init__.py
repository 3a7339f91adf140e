"""The latent explorer: a FastAPI app (`create_app`) served by uvicorn on a socket bound up front.

Binding the socket ourselves, before uvicorn starts, turns "address already in use" into one clear
error (and leaves no window between checking a port and using it); `port=0` picks a free port.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from typing import Any

from vaelab.errors import VaelabError
from vaelab.serve.app import create_app

__all__ = ["bind", "create_app", "is_loopback", "make_server"]

# What bind() fails with when another socket holds the address: EADDRINUSE (98 on Linux, 48 on macOS), and
# WSAEADDRINUSE (10048), which Windows' sockets report as the errno.
ADDRESS_IN_USE = frozenset({errno.EADDRINUSE, 10048})


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; VaelabError with one line when that is not possible.

    Args:
        host: the address to listen on (a name, IPv4 or IPv6).
        port: the TCP port, 0 for any free one.
    """
    if not 0 <= port <= 65535:
        raise VaelabError(f"port must be between 0 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise VaelabError(f"cannot serve on host {host!r}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno in ADDRESS_IN_USE:
            raise VaelabError(
                f"port {port} on {host} is already in use: stop what is using it or pass --port N"
            ) from None
        raise VaelabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    """True when `host` names this machine only (127.0.0.0/8, ::1 or localhost).

    Args:
        host: a host name or address.
    """
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def make_server(app: Any, log_level: str = "warning") -> Any:
    """A uvicorn Server for `app` (run it with `server.run(sockets=[bind(host, port)])`).

    Args:
        app: the ASGI app (`create_app(...)`).
        log_level: uvicorn's log level.
    """
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)
