"""The Linux st backend: ``st:/dev/nstN`` (or a bare ``/dev/nstN``).

:class:`LinuxStOps` is the thin st ops object (``os.read`` / ``os.write`` / ``fcntl.ioctl``) that
:class:`tapearc.media.stlike.StLikeDrive` drives -- the same adapter that drives the simulator, so
st's corner cases are handled by code that every test run exercises. :func:`open_st` opens the
device the careful way (docs/hardware.md; TAPE-FACTS §1 and §6):

* **Probe without waiting.** st's blocking ``open()`` waits up to 120 s for a tape. The device is
  opened with ``O_NONBLOCK`` first: an empty drive (GMT_DR_OPEN, ENOMEDIUM, or EIO at open) is
  "no tape in drive" at once; a drive that is loading (not ONLINE yet, e.g. right after a changer
  load -- st swallows the UNIT ATTENTION) is re-probed until it is ready or the load deadline
  (``load_timeout``, default 300 s, ``TAPEARC_ST_LOAD_TIMEOUT``) passes. ``O_NONBLOCK`` is then
  cleared, so every later operation runs with st's own timeouts (rewind, locate and space can
  take minutes on a real drive; tapearc adds no shorter timeout).
* **Errors at open.** Missing node, not an st device, EBUSY ("drive busy"), no permission: all
  MediumUnavailableError with a one-line reason.
* **Write protection.** ``O_NONBLOCK`` skips st's EROFS check at open, so GMT_WR_PROT decides: a
  write-protected tape is opened with ``writable=False`` and writes raise WriteProtectedError
  (an EROFS from a blocking open is handled the same way).
* **Rewinding nodes.** ``/dev/stN`` rewinds at every close, and st writes a filemark at close
  after a write: it is refused for writing (use ``/dev/nstN``) and accepted for reading.
* **Settings.** Variable-block mode (``MTSETBLK 0``). ``MT_ST_SCSI2LOGICAL`` (so MTSEEK and
  MTIOCPOS use logical object numbers, filemarks included) is set with MTSETDRVBUFFER when the
  process may (CAP_SYS_ADMIN); otherwise an EPERM is tolerated and the positions are the drive's
  vendor block addresses (the same numbers on LTO drives and in the lab; see docs/hardware.md).
* **Record size.** st offers no ioctl for the drive's READ BLOCK LIMITS, so the largest record is
  a setting: ``max_record_size``, else ``TAPEARC_ST_MAX_RECORD`` (``1M``, ``4M``, ...), else
  1 MiB (what the lab's emulated drive takes; LTO drives take more). Reads use a buffer of exactly
  that size; a larger record on the tape (ENOMEM) is re-read with a larger buffer, up to st's
  24-bit limit of 16 MiB - 1 (``MAX_ST_RECORD``).
* **Position at open.** The tape is rewound at open (a no-rewind device keeps wherever the last
  program left it, and st's file/block counters are not reliable after tapearc's ``MTWEOF 0``):
  every TapeDrive starts at the beginning. ``rewind=False`` keeps the position (``drive status``).

The ioctl request numbers are computed from the struct sizes (TAPE-FACTS §1.8), which is right
for the asm-generic ioctl layout (x86, arm, arm64, riscv) but not for ppc, mips, sparc, alpha.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import MediumUnavailableError, TapearcError, UsageError
from . import mtio
from .stlike import StLikeDrive, translate_oserror

__all__ = [
    "DEFAULT_MAX_RECORD",
    "MAX_ST_RECORD",
    "LinuxStDrive",
    "LinuxStOps",
    "StProbe",
    "open_st",
    "probe_st",
    "st_max_record_setting",
]

ST_MAJOR = 9  # SCSI_TAPE_MAJOR
DEFAULT_MAX_RECORD = 1 << 20
MAX_ST_RECORD = (1 << 24) - 1  # READ(6)/WRITE(6) carry a 24-bit transfer length
DEFAULT_LOAD_TIMEOUT = 300.0
_POLL = 1.0


def st_max_record_setting(max_record_size: int | None = None) -> int:
    """The largest record: the parameter, else ``TAPEARC_ST_MAX_RECORD``, else 1 MiB."""
    if max_record_size is None:
        from tapearc import settings

        max_record_size = settings.st_max_record() or DEFAULT_MAX_RECORD
    if not 1 <= max_record_size <= MAX_ST_RECORD:
        raise UsageError(
            f"maximum record size {max_record_size} is outside 1 .. {MAX_ST_RECORD} bytes (st's 24-bit limit)"
        )
    return int(max_record_size)


def _load_timeout(value: float | None) -> float:
    if value is not None:
        return float(value)
    from tapearc import settings

    return settings.st_load_timeout()


class LinuxStOps:
    """The st ops (see :class:`tapearc.media.stlike.StOps`) of an open st device (a file descriptor)."""

    def __init__(self, fd: int, path: str, *, max_record: int = DEFAULT_MAX_RECORD) -> None:
        self._fd: int | None = fd
        self.path = path
        self.max_record = max_record
        self.capacity: int | None = None
        self.used: int | None = None

    def _fileno(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "device closed")
        return self._fd

    def read(self, n: int) -> bytes:
        return os.read(self._fileno(), n)

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        return os.write(self._fileno(), buf)

    def mtop(self, op: int, count: int = 1) -> None:
        fcntl.ioctl(self._fileno(), mtio.MTIOCTOP, mtio.MTOP_STRUCT.pack(op, count))

    def mtget(self) -> mtio.MtGetLike:
        buf = bytearray(mtio.MTGET_STRUCT.size)
        fcntl.ioctl(self._fileno(), mtio.MTIOCGET, buf, True)
        return mtio.MtGetLike(*mtio.MTGET_STRUCT.unpack(buf))

    def mtpos(self) -> int:
        buf = bytearray(mtio.MTPOS_STRUCT.size)
        fcntl.ioctl(self._fileno(), mtio.MTIOCPOS, buf, True)
        return int(mtio.MTPOS_STRUCT.unpack(buf)[0])

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


# ----------------------------------------------------------------------------- opening


@dataclass
class StProbe:
    """What opening found out about the drive (kept for ``drive status``)."""

    path: str
    rewinding: bool
    write_protected: bool = False
    scsi2logical: bool | None = None  # None: unknown (no sysfs)
    scsi2logical_note: str = ""
    options: int | None = None  # /sys/class/scsi_tape/<name>/options
    waited: float = 0.0  # seconds spent waiting for the drive to become ready
    notes: list[str] = field(default_factory=list)


def _sysfs_name(path: str, rdev: int) -> str | None:
    """The st device's sysfs name (nst0, st0l, ...) from its device number."""
    want = f"{os.major(rdev)}:{os.minor(rdev)}"
    base = "/sys/class/scsi_tape"
    try:
        for name in os.listdir(base):
            try:
                with open(f"{base}/{name}/dev") as f:
                    if f.read().strip() == want:
                        return name
            except OSError:
                continue
    except OSError:
        pass
    return None


def _read_options(sysname: str | None) -> int | None:
    if sysname is None:
        return None
    try:
        with open(f"/sys/class/scsi_tape/{sysname}/options") as f:
            return int(f.read().strip(), 0)
    except (OSError, ValueError):
        return None


def _check_node(path: str, name: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediumUnavailableError(
            f"no such tape device {path}",
            medium=name,
            hint="tape drives are /dev/nst0, /dev/nst1, ... (is the st module loaded? `lsscsi`)",
        ) from None
    except OSError as err:
        raise MediumUnavailableError(f"cannot use {path}: {err.strerror}", medium=name) from None
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != ST_MAJOR:
        raise MediumUnavailableError(
            f"{path} is not an st tape device",
            medium=name,
            hint="use the no-rewind st node, e.g. /dev/nst0",
        )
    return st


def _open_error(err: OSError, path: str, name: str) -> TapearcError:
    code = err.errno
    if code == errno.EBUSY:
        return MediumUnavailableError(
            f"drive busy: {path} is in use by another program",
            medium=name,
            hint="st allows one open at a time; wait for the other program (`fuser -v " + path + "`)",
        )
    if code in (errno.EACCES, errno.EPERM):
        return MediumUnavailableError(
            f"permission denied opening {path}",
            medium=name,
            hint="run as root or as a member of the device's group (usually 'tape')",
        )
    if code in (errno.ENOMEDIUM, errno.EIO):
        return MediumUnavailableError(f"no tape in drive {path}", medium=name, hint="load a tape", reason="no-tape")
    if code in (errno.ENXIO, errno.ENODEV, errno.ENOENT):
        return MediumUnavailableError(f"no such tape device {path} (no drive behind the node)", medium=name)
    return MediumUnavailableError(
        f"cannot open {path}: {os.strerror(code) if code else err} ({errno.errorcode.get(code or 0, '?')})",
        medium=name,
    )


def _open_ready(path: str, name: str, flags: int, load_timeout: float) -> tuple[int, float]:
    """Open with O_NONBLOCK until the drive reports ONLINE. Returns (fd, seconds waited)."""
    start = time.monotonic()
    deadline = start + load_timeout
    while True:
        try:
            fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            raise _open_error(err, path, name) from None
        try:
            g = _mtget_fd(fd)
        except OSError as err:
            os.close(fd)
            raise _open_error(err, path, name) from None
        if g.mt_gstat & mtio.GMT_ONLINE:
            return fd, time.monotonic() - start
        os.close(fd)
        if g.mt_gstat & mtio.GMT_DR_OPEN:
            raise MediumUnavailableError(f"no tape in drive {path}", medium=name, hint="load a tape", reason="no-tape")
        # not ready yet (a tape loading, st re-checks at each open): wait with a deadline
        if time.monotonic() >= deadline:
            raise MediumUnavailableError(
                f"drive {path} did not become ready within {load_timeout:.0f} s",
                medium=name,
                hint="is a tape loading or stuck? check `mt-st -f " + path + " status`; "
                "TAPEARC_ST_LOAD_TIMEOUT sets the wait",
            )
        time.sleep(_POLL)


def _mtget_fd(fd: int) -> mtio.MtGetLike:
    buf = bytearray(mtio.MTGET_STRUCT.size)
    fcntl.ioctl(fd, mtio.MTIOCGET, buf, True)
    return mtio.MtGetLike(*mtio.MTGET_STRUCT.unpack(buf))


def probe_st(
    path: str,
    *,
    write: bool,
    name: str | None = None,
    max_record_size: int | None = None,
    load_timeout: float | None = None,
) -> tuple[LinuxStOps, StProbe]:
    """Open ``path`` ready for use (see the module docstring); the tape does not move.

    Returns the ops and what was found. ``write=True`` on a write-protected tape still succeeds
    (``probe.write_protected``); the caller decides.
    """
    name = name or f"st:{path}"
    max_record = st_max_record_setting(max_record_size)
    st = _check_node(path, name)
    rewinding = not (os.minor(st.st_rdev) & 0x80)
    if rewinding and write:
        raise UsageError(
            f"refusing to write through the rewinding device {path}: it rewinds at every close "
            "and st writes a filemark when it is closed after a write",
            hint=f"use the no-rewind device {_no_rewind_name(path)}",
        )
    fd, waited = _open_ready(path, name, os.O_RDWR if write else os.O_RDONLY, _load_timeout(load_timeout))
    probe = StProbe(path=path, rewinding=rewinding, waited=waited)
    ops = LinuxStOps(fd, path, max_record=max_record)
    try:
        # back to blocking mode: later operations wait as long as st's own timeouts allow
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)
        g = ops.mtget()
        probe.write_protected = bool(g.mt_gstat & mtio.GMT_WR_PROT)
        try:
            ops.mtop(mtio.MTSETBLK, 0)  # variable-block mode: one write() = one record
        except OSError as err:
            raise _setting_error(err, path, name, "variable-block mode (MTSETBLK 0)") from None
        sysname = _sysfs_name(path, st.st_rdev)
        try:
            ops.mtop(mtio.MTSETDRVBUFFER, mtio.MT_ST_SETBOOLEANS | mtio.MT_ST_SCSI2LOGICAL)
            probe.scsi2logical = True
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.ENOSYS):
                raise _setting_error(err, path, name, "SCSI-2 logical addressing") from None
            probe.scsi2logical_note = (
                f"could not set scsi2logical ({errno.errorcode.get(err.errno, err.errno)}: needs "
                "CAP_SYS_ADMIN); positions are the drive's vendor block addresses"
            )
        probe.options = _read_options(sysname)
        if probe.options is not None:
            probe.scsi2logical = bool(probe.options & mtio.MT_ST_SCSI2LOGICAL)
            if probe.scsi2logical:
                probe.scsi2logical_note = ""
        if probe.scsi2logical is False and not probe.scsi2logical_note:
            probe.scsi2logical_note = "scsi2logical is off; positions are vendor block addresses"
    except BaseException:
        ops.close()
        raise
    return ops, probe


def _setting_error(err: OSError, path: str, name: str, what: str) -> TapearcError:
    from .stlike import translate_oserror

    return translate_oserror(err, f"cannot set {what} on {path}", medium=name)


def _no_rewind_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/n{tail}" if tail.startswith("st") else "/dev/nstN"


class LinuxStDrive(StLikeDrive):
    """The st adapter over an open ``/dev/nstN``, with what opening found out about the drive
    (``probe``)."""

    def __init__(self, ops: LinuxStOps, *, probe: StProbe, **kw: Any) -> None:
        super().__init__(ops, **kw)
        self.probe = probe


def open_st(
    path: str,
    *,
    write: bool,
    name: str | None = None,
    max_record_size: int | None = None,
    load_timeout: float | None = None,
    rewind: bool = True,
) -> LinuxStDrive:
    """Open the st device ``path`` as a :class:`~tapearc.media.stlike.StLikeDrive`.

    ``write=True`` on a write-protected tape opens it with ``writable=False`` (writes then raise
    WriteProtectedError), as the TapeDrive contract asks. ``rewind``: go to the beginning of the
    tape first (the default; see the module docstring).
    """
    name = name or f"st:{path}"
    ops, probe = probe_st(path, write=write, name=name, max_record_size=max_record_size, load_timeout=load_timeout)
    try:
        if rewind:
            try:
                ops.mtop(mtio.MTREW, 1)
            except OSError as err:
                raise translate_oserror(err, f"cannot rewind {path}", medium=name) from None
        drive = LinuxStDrive(
            ops,
            probe=probe,
            name=name,
            writable=write and not probe.write_protected,
            max_record_size=ops.max_record,
            check_eot_every_write=True,  # also collects st's write-behind (async) outcome
            grow_reads_to=MAX_ST_RECORD,
        )
    except BaseException:
        ops.close()
        raise
    return drive
