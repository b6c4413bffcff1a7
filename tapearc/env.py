"""The ``TAPEARC_*`` variables read before anything else is imported: the command server's
socket (:func:`server_socket`), read by the ``tapearc`` command's client on every start.

This module imports nothing but ``os`` (a command's start-up pays for every import before it
knows whether a server runs the command); the other variables are in :mod:`tapearc.settings`,
whose table lists this one too.
"""

from __future__ import annotations

import os

SERVER_VARIABLE = "TAPEARC_SERVER"
#: values of TAPEARC_SERVER that mean "no server: run every command in its own process"
SERVER_OFF = frozenset({"off", "0", "no", "false", "none"})


def default_server_socket() -> str:
    """Where ``tapearc server start`` listens unless told otherwise: ``$XDG_RUNTIME_DIR/tapearc/
    server.sock``, or ``/tmp/tapearc-UID/server.sock`` without XDG_RUNTIME_DIR."""
    base = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    folder = os.path.join(base, "tapearc") if base else f"/tmp/tapearc-{os.getuid()}"
    return os.path.join(folder, "server.sock")


def server_socket() -> str | None:
    """The socket of the command server a command is handed to: ``$TAPEARC_SERVER`` (a path;
    ``off`` or ``0``: none), else the default socket if it exists; None: the command runs in
    its own process."""
    text = os.environ.get(SERVER_VARIABLE)
    if text is not None and text.strip():
        value = text.strip()
        return None if value.lower() in SERVER_OFF else value
    path = default_server_socket()
    return path if os.path.lexists(path) else None
