"""An in-memory st device for the adapter's tests: st semantics plus scripted faults.

It follows TAPE-FACTS §1 independently of tapesim, so the adapter is tested against two
implementations of st. ``hide_fileno=True`` reproduces the real driver's ``mt_fileno`` /
``mt_blkno`` = -1 after MTSEEK / MTEOM (both) and MTBSF (blkno), which the simulator does not.
Faults: ``fake.inject("write", OSError(...))`` makes the next call of that method raise (or call
a function) before doing anything.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tapearc.media import mtio

FM = None  # a filemark in FakeTape.objects


@dataclass
class FakeTape:
    """The medium: objects (bytes records, None = filemark) and its geometry."""

    capacity: int = 1 << 30
    early_warning: int | None = None  # size of the early-warning zone before the capacity
    max_record: int = 256 * 1024
    write_protected: bool = False
    objects: list[bytes | None] = field(default_factory=list)

    def used_before(self, pos: int) -> int:
        return sum(len(o) for o in self.objects[:pos] if o is not None)


@dataclass
class MtGet:
    mt_type: int
    mt_resid: int
    mt_dsreg: int
    mt_gstat: int
    mt_erreg: int
    mt_fileno: int
    mt_blkno: int


def oserr(code: int) -> OSError:
    import os

    return OSError(code, os.strerror(code))


class FakeSt:
    def __init__(
        self,
        tape: FakeTape,
        *,
        readonly: bool = False,
        hide_fileno: bool = False,
        report_eod: bool = True,
    ) -> None:
        if tape.write_protected and not readonly:
            raise oserr(errno.EROFS)
        self.tape = tape
        self.readonly = readonly
        self.hide_fileno = hide_fileno
        self.report_eod = report_eod  # False: never GMT_EOD (real st after a mid-file BLANK CHECK)
        self.pos = 0
        self.writing = False
        # written objects the drive holds in its buffer (not yet on the medium): write and
        # MTWEOFI add to it; MTWEOF (any count, 0 = flush only), a move and close write it out
        self.buffered = 0
        self.closed = False
        self.eod_zero_given = False
        self.hit_eod = False
        self.fail_next_write = False
        self.fileno_valid = True
        self.blkno_valid = True
        self.calls: list[tuple[str, Any]] = []
        self._faults: dict[str, list[Any]] = {}

    # ---------------------------------------------------------------- test helpers
    def inject(self, method: str, *outcomes: Any) -> None:
        self._faults.setdefault(method, []).extend(outcomes)

    def _fault(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        queue = self._faults.get(method)
        if queue:
            outcome = queue.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            if callable(outcome):
                outcome(self, *args)

    @property
    def max_record(self) -> int:
        return self.tape.max_record

    @property
    def capacity(self) -> int:
        return self.tape.capacity

    @property
    def used(self) -> int:
        return self.tape.used_before(len(self.tape.objects))

    def _ew_zone(self) -> bool:
        ew = self.tape.early_warning
        return ew is not None and self.tape.used_before(self.pos) > self.tape.capacity - ew

    def _moved(self) -> None:
        self.eod_zero_given = False
        self.hit_eod = False

    def _weof_if_writing(self) -> None:
        if self.writing:
            self._put(FM)
        self.writing = False

    def _put(self, obj: bytes | None) -> None:
        del self.tape.objects[self.pos :]
        self.tape.objects.append(obj)
        self.pos += 1

    # ---------------------------------------------------------------- st ops
    def read(self, n: int) -> bytes:
        self._fault("read", n)
        if n > self.tape.max_record:
            raise oserr(errno.EINVAL)
        self.writing = False
        objs = self.tape.objects
        if self.pos >= len(objs):
            if self.pos > 0 and objs[self.pos - 1] is FM and not self.eod_zero_given:
                self.eod_zero_given = True
                return b""
            self.hit_eod = True
            raise oserr(errno.EIO)
        obj = objs[self.pos]
        self._moved()
        self.pos += 1
        if obj is FM:
            self.blkno_valid = True
            return b""
        if len(obj) > n:
            raise oserr(errno.ENOMEM)
        return obj

    def write(self, buf: Any) -> int:
        self._fault("write", buf)
        if self.readonly:
            raise oserr(errno.EACCES)
        data = bytes(buf)
        if len(data) > self.tape.max_record:
            raise oserr(errno.EINVAL)
        if not data:
            return 0
        used = self.tape.used_before(self.pos)
        if used + len(data) > self.tape.capacity:
            raise oserr(errno.ENOSPC)
        if self._ew_zone() and self.fail_next_write:
            self.fail_next_write = False
            raise oserr(errno.ENOSPC)
        self._moved()
        self._put(data)
        self.buffered += 1
        self.writing = True
        if self._ew_zone():
            self.fail_next_write = True
        return len(data)

    def mtop(self, op: int, count: int = 1) -> None:
        self._fault("mtop", op, count)
        if op not in (mtio.MTNOP, mtio.MTSETBLK):
            if op in (mtio.MTREW, mtio.MTOFFL, mtio.MTSEEK, mtio.MTBSF):
                self._weof_if_writing()
            self.writing = False
        self._moved()
        if op in (mtio.MTWEOF, mtio.MTWEOFI):
            # st: MTWEOFI is WRITE FILEMARKS with IMMED=1 (no flush); any MTIOCTOP but NOP and
            # SETBLK made st idle above, so close after either writes no filemark
            if self.readonly:
                raise oserr(errno.EACCES)
            if count < 0:
                raise oserr(errno.EINVAL)
            for _ in range(count):
                self._put(FM)
            self.buffered = self.buffered + count if op == mtio.MTWEOFI else 0
            self.fail_next_write = False
        elif op in (mtio.MTREW, mtio.MTOFFL, mtio.MTSEEK, mtio.MTEOM, mtio.MTFSF, mtio.MTBSF, mtio.MTBSR, mtio.MTFSR):
            self.buffered = 0  # the drive writes its buffer out before moving
            self._move(op, count)
        elif op in (mtio.MTNOP, mtio.MTSETBLK):
            pass
        else:
            raise oserr(errno.EINVAL)

    def _move(self, op: int, count: int) -> None:
        objs = self.tape.objects
        if op in (mtio.MTREW, mtio.MTOFFL):
            self.pos = 0
            self.fileno_valid = self.blkno_valid = True
        elif op == mtio.MTSEEK:
            self.fileno_valid = self.blkno_valid = False
            if count > len(objs):
                self.pos = len(objs)
                raise oserr(errno.EIO)
            self.pos = count
        elif op == mtio.MTEOM:
            self.pos = len(objs)
            self.fileno_valid = self.blkno_valid = False
            self.hit_eod = True
        elif op == mtio.MTFSF:
            for _ in range(count):
                while self.pos < len(objs) and objs[self.pos] is not FM:
                    self.pos += 1
                if self.pos >= len(objs):
                    self.hit_eod = True
                    raise oserr(errno.EIO)
                self.pos += 1
                self.blkno_valid = True
        elif op == mtio.MTBSF:
            self.blkno_valid = False
            for _ in range(count):
                self.pos -= 1
                while self.pos >= 0 and objs[self.pos] is not FM:
                    self.pos -= 1
                if self.pos < 0:
                    self.pos = 0
                    self.blkno_valid = True
                    raise oserr(errno.EIO)
        elif op == mtio.MTBSR:
            self.blkno_valid = False
            for _ in range(count):
                if self.pos == 0 or objs[self.pos - 1] is FM:
                    raise oserr(errno.EIO)
                self.pos -= 1
        elif op == mtio.MTFSR:
            self.blkno_valid = False
            for _ in range(count):
                if self.pos >= len(objs) or objs[self.pos] is FM:
                    raise oserr(errno.EIO)
                self.pos += 1

    def _file_rec(self) -> tuple[int, int]:
        objs = self.tape.objects
        file = sum(1 for o in objs[: self.pos] if o is FM)
        last = max((i for i in range(self.pos) if objs[i] is FM), default=-1)
        return file, self.pos - last - 1

    def mtget(self) -> MtGet:
        self._fault("mtget")
        file, rec = self._file_rec()
        if self.hide_fileno:
            file = file if self.fileno_valid else -1
            rec = rec if self.blkno_valid else -1
        gstat = mtio.GMT_ONLINE
        if self.pos == 0:
            gstat |= mtio.GMT_BOT
        if self._ew_zone():
            gstat |= mtio.GMT_EOT
        if self.report_eod and self.hit_eod and self.pos == len(self.tape.objects):
            gstat |= mtio.GMT_EOD
        if self.tape.write_protected:
            gstat |= mtio.GMT_WR_PROT
        return MtGet(0x72, 0, 0, gstat, 0, file, rec)

    def mtpos(self) -> int:
        self._fault("mtpos")
        return self.pos

    def close(self) -> None:
        if self.closed:
            return
        self._weof_if_writing()  # st writes a filemark at close after a write
        self.buffered = 0  # close returns when the drive's buffer is on the medium
        self.closed = True


Outcome = Callable[[FakeSt], None]
