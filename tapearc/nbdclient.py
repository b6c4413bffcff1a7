"""NBD exports as volumes: naming them by URI and connecting through libnbd.

tapearc does not speak the NBD protocol itself: libnbd (the NBD client of the qemu/nbdkit
world, Debian ``python3-libnbd``) does, with the URI forms qemu-img, nbdinfo and nbdcopy take
(``nbd://HOST[:PORT]/EXPORT``, ``nbd+unix:///EXPORT?socket=PATH``; ``nbds://`` with TLS: a
pre-shared key ``nbds://USER@HOST:PORT/EXPORT?tls-psk-file=FILE`` or certificates
``?tls-certificates=DIR``, docs/remote-sources.md). This
module is the one place that imports it: a missing libnbd, a URI it cannot parse or an export
that does not answer is an error of the caller's kind (a source's or a restore target's), one
line naming the URI, never a traceback.

Debian's python3-libnbd is built for the system Python; ``make`` links its two files into the
project's virtual environment (the module ``nbd`` and its extension ``libnbdmod``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tapearc import settings
from tapearc.errors import TapearcError

#: URI schemes libnbd connects to (RFC-style NBD URIs, as qemu and libnbd spell them).
NBD_SCHEMES = ("nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://", "nbds+vsock://")

#: The NBD metadata context of allocation (holes and zeros) and the prefix of qemu's dirty bitmaps.
ALLOCATION = "base:allocation"
DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:"

#: Flags of base:allocation extents (NBD protocol): a hole (reads as zeros, not allocated), zero.
STATE_HOLE = 1
STATE_ZERO = 2
#: Flag of a qemu:dirty-bitmap extent: dirty (changed since the bitmap started).
STATE_DIRTY = 1

ErrorFactory = Callable[[str], TapearcError]

_module: ModuleType | None = None


def is_nbd_uri(text: str) -> bool:
    """True when ``text`` names an NBD export (not a path)."""
    return text.lower().startswith(NBD_SCHEMES)


def not_an_nbd_uri(text: str) -> str | None:
    """Why ``text``, which looks like a URI, is not one tapearc can read or write: another scheme
    (``http://``, a typo such as ``nbdx://``), or a name that starts like an NBD one (``nbd:``,
    ``nbds:``, ``nbd+xyz://``) but is not a URI libnbd takes (qemu's legacy ``nbd:HOST:PORT``,
    ``nbd:unix:PATH``). None for an NBD URI and for anything else (a path: ``./nbd:x`` and
    ``./http://x`` name files)."""
    if is_nbd_uri(text):
        return None
    what = (
        "name an NBD export (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH, nbds:// for TLS) "
        "or a file or block device"
    )
    head = text.lower().split(":", 1)[0]
    if ":" in text and re.fullmatch(r"nbds?(\+[a-z0-9]*)?", head):
        return f"{text} is not an NBD URI libnbd takes (qemu's legacy nbd:HOST:PORT form?): {what}"
    other = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if other is not None:
        return f"{text}: tapearc reads and writes no {other.group(1)}:// URIs: {what}"
    return None


def check_source_name(spec: str, what: str = "source") -> None:
    """UsageError (exit 2) when ``spec`` (``what``: a backup's SOURCE or ``verify --against``,
    a restore target) looks like a URI tapearc does not take (:func:`not_an_nbd_uri`): checked
    before a medium is opened or read, never looked for as a file."""
    mistake = not_an_nbd_uri(spec)
    if mistake is not None:
        from tapearc.errors import UsageError

        raise UsageError(f"{what} {mistake}", hint="a file of that name: give it as ./NAME")


def canonical_uri(uri: str) -> str:
    """``uri`` with its scheme in lower case (schemes are case-insensitive, RFC 3986 3.1; libnbd
    takes only ``nbd://``, not ``NBD://``)."""
    scheme, sep, rest = uri.partition("://")
    return scheme.lower() + sep + rest


def tls_warning(uri: str) -> str | None:
    """The warning for a TLS URI (``nbds://``, ``nbds+unix://``...) that names neither
    ``tls-certificates=`` nor ``tls-psk-file=``: libnbd then encrypts but, measured with libnbd
    1.14, connects to a server whose certificate comes from any CA, so the server is not
    authenticated (a pre-shared key authenticates both ends). None for any other URI."""
    scheme, _, rest = uri.partition("://")
    if not scheme.lower().startswith("nbds"):
        return None
    query = parse_qs(urlsplit("x://" + rest).query)
    if "tls-certificates" in query or "tls-psk-file" in query:
        return None
    return (
        f"{uri}: TLS without tls-certificates= or tls-psk-file=: the data is encrypted but the server's identity "
        "is not checked; name the folder with the CA's certificate (docs/remote-sources.md)"
    )


def libnbd(error: ErrorFactory, uri: str) -> ModuleType:
    """The libnbd Python module, or ``error`` naming what to install."""
    global _module
    if _module is None:
        try:
            import nbd
        except ImportError:
            e = error(f"{uri}: NBD exports need libnbd's Python module (nbd), which is not installed")
            e.hint = "apt-get install python3-libnbd (then make links it into the project's venv)"
            raise e from None
        _module = nbd
    return _module


def connect(uri: str, error: ErrorFactory, *, contexts: Sequence[str] = (), writable: bool = False) -> Any:
    """An open libnbd handle on the export ``uri``, with the metadata ``contexts`` requested
    (those the server offers can be asked for with ``can_meta_context``). Raises ``error``
    naming the URI when the export cannot be reached, when its server does not finish the
    handshake within TAPEARC_NBD_TIMEOUT seconds (one that takes the connection and never
    answers), or when ``writable`` and it is read-only."""
    nbd = libnbd(error, uri)
    h = new_handle(nbd)
    try:
        for c in contexts:
            h.add_meta_context(c)
        h.aio_connect_uri(canonical_uri(uri))
        deadline = Deadline()
        if not wait_until(h, lambda: not h.aio_is_connecting(), deadline):
            close(h)
            raise error(f"NBD export {uri} did not answer within {deadline.shown} (connecting)")
        if not h.aio_is_ready():
            raise nbd.Error("the server closed the connection during the handshake")
    except nbd.Error as e:
        close(h)
        raise error(f"cannot connect to NBD export {uri}: {_connect_reason(e)}") from None
    if writable and h.is_read_only():
        close(h)
        raise error(f"NBD export {uri} is read-only")
    return h


class Deadline:
    """TAPEARC_NBD_TIMEOUT seconds (times ``factor``) from now (0: never): how long an NBD server
    may stay silent."""

    def __init__(self, factor: float = 1.0) -> None:
        self.seconds = settings.nbd_timeout() * factor
        self.shown = f"{self.seconds:g} s"
        self.restart()

    def restart(self) -> None:
        self.at = time.monotonic() + self.seconds

    def passed(self) -> bool:
        return self.seconds > 0 and time.monotonic() >= self.at

    def poll_ms(self) -> int:
        """The timeout of one libnbd ``poll``: the time left (-1: no limit)."""
        if self.seconds <= 0:
            return -1
        return max(1, int((self.at - time.monotonic()) * 1000))


def wait_until(h: Any, done: Callable[[], bool], deadline: Deadline | None = None) -> bool:
    """Run the handle's state machine until ``done()``: True, or False when the server stayed
    silent for TAPEARC_NBD_TIMEOUT seconds (a server that answers slowly is waited for). A
    failed command or connection raises libnbd's error."""
    deadline = deadline or Deadline()
    deadline.restart()
    while not done():
        if h.poll(deadline.poll_ms()):
            deadline.restart()  # the server said something
        elif deadline.passed():
            return False
    return True


def await_command(h: Any, cookie: int, deadline: Deadline | None = None) -> bool:
    """Wait for the libnbd command ``cookie`` (an ``aio_*`` call's) to complete: :func:`wait_until`."""
    return wait_until(h, lambda: bool(h.aio_command_completed(cookie)), deadline)


def disconnect(h: Any, deadline: Deadline | None = None) -> None:
    """Say goodbye (NBD_CMD_DISC) and wait for the server to close, at most until it has been
    silent for TAPEARC_NBD_TIMEOUT seconds (libnbd's ``shutdown`` waits for ever); then close the
    handle. A server already gone is no error."""
    try:
        if h.aio_is_ready():
            h.aio_disconnect(0)
            wait_until(h, lambda: bool(h.aio_is_closed() or h.aio_is_dead()), deadline)
    except Exception:  # the server may be gone already
        pass
    close(h)


def new_handle(nbd: ModuleType) -> Any:
    """A libnbd handle that takes the URI's TLS files: libnbd refuses a URI's local file
    parameters (``tls-psk-file=``, ``tls-certificates=``) unless asked to allow them, as nbdinfo
    and qemu-img do. The URI is the operator's (command line, job file), so its files are
    trusted as the operator's own."""
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    return h


def close(h: Any) -> None:
    """Close a libnbd handle and its connection now. libnbd 1.14's Python handle (Debian 12) has
    no ``close()``: its ``__del__`` closes the C handle, which is done here the same way (once)."""
    if hasattr(h, "close"):
        h.close()
        return
    if hasattr(h, "_o") and _module is not None:
        _module.libnbdmod.close(h._o)
        del h._o


def error_number(e: BaseException) -> int | None:
    """The errno of a libnbd error as a number (``errno.ENOSPC``...), None when it has none:
    libnbd's Python ``Error.errno`` is the errno's *name* ('ENOSPC'), ``errnum`` its number."""
    n = getattr(e, "errnum", None)
    return n if isinstance(n, int) and n > 0 else None


def nbd_error_text(e: BaseException) -> str:
    """One line for a libnbd error (its message without the trailing errno text duplication)."""
    return _reason(e)


def _connect_reason(e: BaseException) -> str:
    """A connection's error as libnbd's synchronous connect says it (``nbd_connect_uri: ...``):
    the asynchronous connect reports its steps as ``nbd_aio_connect_uri`` and ``nbd_poll``."""
    text = _reason(e)
    for step in ("nbd_aio_connect_uri: ", "nbd_poll: "):
        if text.startswith(step):
            return "nbd_connect_uri: " + text[len(step) :]
    return text


def _reason(e: BaseException) -> str:
    text = str(getattr(e, "string", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
