"""StLikeDrive against tests/media/fakest.py replaying tricky st sequences."""

from __future__ import annotations

import errno

import pytest

from tapearc.errors import (
    MediumFullError,
    MediumIOError,
    MediumUnavailableError,
    RecordTooLargeError,
    WriteProtectedError,
)
from tapearc.media import mtio
from tapearc.media.base import Mark, Position, WriteStatus
from tapearc.media.stlike import StLikeDrive

from .fakest import FM, FakeSt, FakeTape, oserr

MAX = 4096


def make(objects=(), *, hide_fileno=False, readonly=False, **tape_kw):
    tape = FakeTape(max_record=MAX, objects=list(objects), **tape_kw)
    ops = FakeSt(tape, readonly=readonly, hide_fileno=hide_fileno)
    return StLikeDrive(ops, name="fake:t", writable=not readonly), ops, tape


def mtops(ops: FakeSt) -> list[tuple[int, int]]:
    return [args for name, args in ops.calls if name == "mtop"]


def test_reads_use_a_buffer_of_max_record_size():
    d, ops, _ = make([b"a", FM])
    assert d.read_record() == b"a"
    assert d.read_record() is Mark.FILEMARK
    assert d.read_record() is Mark.END_OF_DATA  # st's zero read at EOD after a filemark
    assert d.read_record() is Mark.END_OF_DATA  # then EIO + GMT_EOD
    assert d.read_record() is Mark.END_OF_DATA
    reads = [args for name, args in ops.calls if name == "read"]
    assert reads and all(args == (MAX,) for args in reads)
    assert d.position() == Position(2, 1, 0)


def test_blank_tape_eio_is_end_of_data():
    d, ops, _ = make()
    assert d.read_record() is Mark.END_OF_DATA
    assert ops.pos == 0


def test_eio_at_known_end_of_data_without_gmt_eod():
    d, ops, _ = make([b"a"])
    assert d.read_record() == b"a"
    assert d.read_record() is Mark.END_OF_DATA
    ops.report_eod = False  # a drive that does not report GMT_EOD
    assert d.read_record() is Mark.END_OF_DATA
    assert d.position() == Position(1, 0, 1)
    assert mtops(ops) == []  # the end of data was known: no probe


def test_enospc_is_retried_once_and_reported_as_early_warning():
    d, ops, tape = make()
    ops.inject("write", oserr(errno.ENOSPC))
    assert d.write_record(b"rec") is WriteStatus.EARLY_WARNING
    assert tape.objects == [b"rec"]
    assert [n for n, _ in ops.calls].count("write") == 2
    assert d.position() == Position(1, 0, 1)


def test_second_enospc_is_medium_full_with_nothing_written():
    d, ops, tape = make([b"a"])
    d.seek_end_of_data()
    ops.inject("write", oserr(errno.ENOSPC), oserr(errno.ENOSPC))
    with pytest.raises(MediumFullError) as info:
        d.write_record(b"b")
    assert "full" in str(info.value)
    assert info.value.medium == "fake:t"
    assert tape.objects == [b"a"]
    assert d.position() == Position(1, 0, 1)
    # the adapter still works (the drive decides); a full medium is in the early-warning zone
    assert d.write_record(b"c") is WriteStatus.EARLY_WARNING


def test_enospc_that_moved_the_tape_is_a_mismatch():
    d, ops, _ = make()

    def moved_enospc(fake, buf):
        fake.pos += 1
        raise oserr(errno.ENOSPC)

    ops.inject("write", moved_enospc)
    with pytest.raises(MediumIOError, match="position mismatch: tapearc expected 0, drive says 1"):
        d.write_record(b"x")
    with pytest.raises(MediumIOError, match="position unknown"):
        d.write_record(b"x")


def test_early_warning_from_gmt_eot_on_the_write_that_enters_the_zone():
    d, ops, tape = make(capacity=100, early_warning=50)
    assert d.write_record(b"x" * 40) is WriteStatus.OK
    assert d.write_record(b"x" * 20) is WriteStatus.EARLY_WARNING  # entered the zone, no ENOSPC
    assert [n for n, _ in ops.calls].count("write") == 2
    assert d.write_record(b"x" * 10) is WriteStatus.EARLY_WARNING  # ENOSPC + retry
    assert [n for n, _ in ops.calls].count("write") == 4
    assert d.write_record(b"x" * 10) is WriteStatus.EARLY_WARNING
    with pytest.raises(MediumFullError):
        d.write_record(b"x" * 30)
    assert d.position() == Position(4, 0, 4)
    assert d.write_filemark() is WriteStatus.EARLY_WARNING
    assert len(tape.objects) == 5


def test_early_warning_sticks_to_the_zone_when_gmt_eot_flickers():
    # real st shows GMT_EOT only while its eof state is ST_EOM_OK (not after a refused write
    # or a filemark); the zone is a place on the tape, so the adapter remembers where it began
    d, ops, _tape = make(capacity=1000, early_warning=500)
    real_mtget = ops.mtget
    hide = {"eot": False}

    def mtget():
        g = real_mtget()
        if hide["eot"]:
            g.mt_gstat &= ~mtio.GMT_EOT
        return g

    ops.mtget = mtget  # type: ignore[method-assign]
    assert d.write_record(b"x" * 400) is WriteStatus.OK
    assert d.write_record(b"x" * 200) is WriteStatus.EARLY_WARNING  # zone from object 1
    hide["eot"] = True
    assert d.write_filemark() is WriteStatus.EARLY_WARNING
    assert d.status().early_warning is True
    d.rewind()
    assert d.write_record(b"y") is WriteStatus.OK  # rewritten before the zone
    assert d.status().early_warning is False


def test_enomem_is_record_too_large_past_the_record():
    _d, ops, _ = make([b"a", b"b" * 3000, b"c"])
    ops.tape.max_record = 8192
    d2 = StLikeDrive(ops, name="fake:t", writable=True, max_record_size=1000)
    assert d2.read_record() == b"a"
    with pytest.raises(RecordTooLargeError) as info:
        d2.read_record()
    assert (info.value.tape_file, info.value.record) == (0, 1)
    assert d2.position() == Position(2, 0, 2)
    assert d2.read_record() == b"c"


def test_unreadable_record_names_the_position_and_skips_it():
    d, ops, _ = make([b"a", FM, b"b", b"c"])

    def bad(fake, n):
        fake.pos += 1
        raise oserr(errno.EIO)

    assert d.read_record() == b"a"
    assert d.read_record() is Mark.FILEMARK
    ops.inject("read", bad)
    with pytest.raises(MediumIOError) as info:
        d.read_record()
    assert (info.value.tape_file, info.value.record) == (1, 0)
    assert "object 2" in str(info.value)
    assert d.position() == Position(3, 1, 1)
    assert d.read_record() == b"c"


def test_unreadable_record_without_moving_is_skipped():
    d, ops, _ = make([b"a", b"b"])
    ops.inject("read", oserr(errno.EIO))
    with pytest.raises(MediumIOError, match="unreadable record at object 0"):
        d.read_record()
    assert d.position() == Position(1, 0, 1)  # the adapter moved past it
    assert d.read_record() == b"b"


def test_end_of_data_without_gmt_eod_is_probed():
    tape = FakeTape(max_record=MAX, objects=[b"a", FM, b"b"])
    ops = FakeSt(tape, report_eod=False, hide_fileno=True)
    d = StLikeDrive(ops, name="fake:t", writable=True)
    assert d.space_files(1) == 1
    assert d.read_record() == b"b"
    assert d.read_record() is Mark.END_OF_DATA  # EIO, no GMT_EOD: MTEOM did not move
    assert (mtio.MTEOM, 1) in mtops(ops)
    n = len(mtops(ops))
    assert d.read_record() is Mark.END_OF_DATA  # now known: no second probe
    assert len(mtops(ops)) == n
    assert d.position() == Position(3, 1, 1)
    d.rewind()
    assert d.read_record() == b"a"


def test_position_mismatch_on_a_filemark_then_refuses_to_write():
    d, ops, _tape = make()
    d.write_record(b"a")
    ops.pos = 0  # moved behind tapearc's back
    with pytest.raises(MediumIOError, match="position mismatch: tapearc expected 2, drive says 1"):
        d.write_filemark()
    with pytest.raises(MediumIOError, match="position unknown"):
        d.write_record(b"b")
    with pytest.raises(MediumIOError, match="position unknown"):
        d.read_record()
    with pytest.raises(MediumIOError, match="position unknown"):
        d.position()
    st = d.status()
    assert "position_lost" in st.details
    d.rewind()
    assert d.position() == Position(0, 0, 0)


def test_position_mismatch_found_by_position():
    d, ops, _ = make([b"a", b"b", b"c"])
    d.read_record()
    ops.pos = 3
    with pytest.raises(MediumIOError, match="position mismatch: tapearc expected 1, drive says 3"):
        d.position()


def test_zero_read_that_jumps_is_a_mismatch():
    d, ops, _ = make([b"a", FM, FM, b"b"])
    real_read = ops.read

    def jumping_read(n):
        data = real_read(n)
        ops.pos += 1  # the drive skipped an object while reading the filemark
        return data

    assert d.read_record() == b"a"
    ops.read = jumping_read  # type: ignore[method-assign]
    with pytest.raises(MediumIOError, match="position mismatch: tapearc expected 2, drive says 3"):
        d.read_record()


def test_locate_after_write_does_not_let_st_add_a_filemark():
    d, ops, tape = make()
    d.write_record(b"a")
    d.write_record(b"b")
    d.locate(1)
    assert tape.objects == [b"a", b"b"]
    assert (mtio.MTWEOF, 0) in mtops(ops)
    d.write_record(b"c")
    d.close()
    assert tape.objects == [b"a", b"c"]  # st's close filemark suppressed too
    assert mtops(ops)[-1] == (mtio.MTWEOF, 0)


def test_close_after_reading_issues_nothing():
    d, ops, _tape = make([b"a"])
    d.read_record()
    d.close()
    assert mtops(ops) == []
    d.close()
    with pytest.raises(MediumIOError, match="closed"):
        d.read_record()


def test_hidden_fileno_walks_once_then_uses_bookkeeping():
    objs = [b"a", b"b", FM, b"c", FM, FM, b"d", b"e"]
    d, ops, _ = make(objs, hide_fileno=True)
    d.locate(7)
    assert d.position() == Position(7, 3, 1)
    assert (mtio.MTREW, 1) in mtops(ops) and (mtio.MTFSF, 1) in mtops(ops)
    before = len(mtops(ops))
    d.locate(3)
    assert d.position() == Position(3, 1, 0)
    d.locate(5)
    assert d.position() == Position(5, 2, 0)
    assert mtops(ops)[before:] == [(mtio.MTSEEK, 3), (mtio.MTSEEK, 5)]  # no second walk
    assert d.read_record() is Mark.FILEMARK
    assert d.read_record() == b"d"
    assert d.seek_end_of_data() == Position(8, 3, 2)
    assert d.space_files(-2) == 2
    assert d.position() == Position(4, 1, 1)


def test_hidden_fileno_after_writes_needs_no_walk():
    d, ops, _ = make(hide_fileno=True)
    for obj in [b"a", FM, b"b", b"c"]:
        d.write_filemark() if obj is FM else d.write_record(obj)
    d.locate(3)
    assert d.position() == Position(3, 1, 1)
    assert (mtio.MTFSF, 1) not in mtops(ops)


def test_drive_and_bookkeeping_disagree():
    d, _ops, tape = make([b"a", FM, b"b"])
    assert d.space_files(1) == 1  # learns: filemark 0 at object 1
    assert d.read_record() == b"b"
    assert d.read_record() is Mark.END_OF_DATA  # learns: end of data at 3, in tape file 1
    d.rewind()
    tape.objects[:] = [b"a", b"x", FM, b"b"]  # tape changed behind tapearc's back
    with pytest.raises(MediumIOError, match="position mismatch: tapearc expected tape file 1"):
        d.locate(2)


def test_open_with_unknown_position_rewinds():
    tape = FakeTape(max_record=MAX, objects=[b"a", FM, b"b"])
    ops = FakeSt(tape, hide_fileno=True)
    ops.pos = 2
    ops.fileno_valid = ops.blkno_valid = False
    d = StLikeDrive(ops, name="fake:t", writable=True)
    assert d.position() == Position(0, 0, 0)
    assert ops.pos == 0


def test_write_errors():
    d, ops, _tape = make()
    ops.inject("write", oserr(errno.EACCES))
    with pytest.raises(WriteProtectedError):
        d.write_record(b"a")
    ops.inject("write", oserr(errno.EIO))
    with pytest.raises(MediumIOError, match="Input/output error"):
        d.write_record(b"a")
    assert d.write_record(b"a") is WriteStatus.OK  # EIO left the position known: usable

    d2, ops2, _ = make()
    ops2.write = lambda buf: 1  # type: ignore[method-assign]
    with pytest.raises(MediumIOError, match="short write"):
        d2.write_record(b"abc")
    with pytest.raises(MediumIOError, match="position unknown"):
        d2.write_record(b"abc")


def test_no_medium_is_unavailable():
    d, ops, _ = make([b"a"])
    ops.inject("read", oserr(errno.ENOMEDIUM))
    with pytest.raises(MediumUnavailableError):
        d.read_record()


def test_write_protected_cartridge_from_gstat():
    tape = FakeTape(max_record=MAX, write_protected=True)
    ops = FakeSt(tape, readonly=True)
    d = StLikeDrive(ops, name="fake:t", writable=True)
    assert d.writable is False
    with pytest.raises(WriteProtectedError, match="write-protected"):
        d.write_filemark()


def test_space_files_that_ends_in_the_wrong_place():
    d, ops, _ = make([b"a", FM, b"b", FM])

    def wrong(fake, op, count):
        if op == mtio.MTFSF:
            fake.pos = 3  # a drive that stopped one object short without an error
            raise _Skip

    ops.mtop = _wrap(ops.mtop, wrong)  # type: ignore[method-assign]
    with pytest.raises(MediumIOError, match="position mismatch"):
        d.space_files(2)


class _Skip(Exception):
    pass


def _wrap(real, hook):
    def mtop(op, count=1):
        try:
            hook(real.__self__, op, count)
        except _Skip:
            return None
        return real(op, count)

    return mtop


def test_status_reports_st_details():
    d, ops, _ = make([b"a", FM])
    st = d.status()
    assert st.at_bot is True
    assert st.position == Position(0, 0, 0)
    assert "BOT" in st.details["flags"]
    assert st.capacity == ops.capacity
    d.space_files(1)
    d.read_record()
    st = d.status()
    assert st.at_eod is True
    assert st.position == Position(2, 1, 0)


# ----------------------------------------------------------------- real-st specifics (linux_st)


def test_larger_record_is_re_read_with_a_larger_buffer():
    # the st backend (grow_reads_to): ENOMEM -> MTBSR 1 -> read again with twice the buffer
    _d, ops, _ = make([b"a", b"b" * 3000, b"c"])
    ops.tape.max_record = 8192
    d2 = StLikeDrive(ops, name="fake:t", writable=True, max_record_size=1000, grow_reads_to=8192)
    assert d2.read_record() == b"a"
    assert d2.read_record() == b"b" * 3000
    assert d2.position() == Position(2, 0, 2)
    reads = [args[0] for name, args in ops.calls if name == "read"]
    assert reads == [1000, 1000, 2000, 4000]
    assert (mtio.MTBSR, 1) in mtops(ops)
    assert d2.read_record() == b"c"
    assert d2.read_record() is Mark.END_OF_DATA


def test_record_larger_than_any_buffer_the_drive_takes_is_skipped():
    # the drive refuses the larger buffer (EINVAL, as st above READ BLOCK LIMITS): give up, past it
    _d, ops, _ = make([b"b" * 3000, b"c"])
    ops.tape.max_record = 2048
    d2 = StLikeDrive(ops, name="fake:t", writable=True, max_record_size=1000, grow_reads_to=8192)
    with pytest.raises(RecordTooLargeError):
        d2.read_record()
    assert d2.position() == Position(1, 0, 1)
    assert d2.read_record() == b"c"


def test_write_behind_early_warning_from_mtget():
    # st's asynchronous writes report the early warning at the next call (MTIOCGET's flush)
    d, ops, _tape = make()
    assert d.write_record(b"r0") is WriteStatus.OK
    ops.inject("mtget", oserr(errno.ENOSPC))
    assert d.write_record(b"r1") is WriteStatus.EARLY_WARNING
    assert d.write_record(b"r2") is WriteStatus.EARLY_WARNING  # the zone is a place on the tape
    assert d.position() == Position(3, 0, 3)


def test_write_behind_failure_at_the_physical_end_is_medium_full():
    d, ops, _tape = make()
    ops.inject("mtget", oserr(errno.ENOSPC))
    assert d.write_record(b"r0") is WriteStatus.EARLY_WARNING

    def lose_it(fake, *args):  # the write-behind failed: the record never reached the tape
        del fake.tape.objects[-1]
        fake.pos -= 1
        raise oserr(errno.EIO)

    ops.inject("mtget", lose_it)
    with pytest.raises(MediumFullError):
        d.write_record(b"r1")
    assert d.position() == Position(1, 0, 1)
    assert d.write_filemark() is WriteStatus.EARLY_WARNING


def test_at_bot_comes_from_the_position_not_gmt_bot():
    # st resets its block counter on MTWEOF 0 and then claims GMT_BOT in the middle of file 0
    d, ops, _ = make([b"a", b"b"])
    d.locate(1)
    real = ops.mtget

    def fake_bot():
        g = real()
        g.mt_gstat |= mtio.GMT_BOT
        return g

    ops.mtget = fake_bot  # type: ignore[method-assign]
    assert d.status().at_bot is False


# ---------------------------------------------------------------- immediate filemarks, sync


def test_immediate_filemark_is_mtweofi_and_sync_is_mtweof_0():
    d, ops, tape = make()
    d.write_record(b"a")
    assert d.write_filemark(immediate=True) is WriteStatus.OK
    d.write_record(b"b")
    assert d.write_filemark(immediate=True) is WriteStatus.OK
    assert ops.buffered == 4  # nothing flushed: the tape kept streaming
    assert d.position() == Position(4, 2, 0)
    d.sync()
    assert ops.buffered == 0
    assert d.position() == Position(4, 2, 0)  # sync did not move
    assert tape.objects == [b"a", FM, b"b", FM]
    assert mtops(ops) == [(mtio.MTWEOFI, 1), (mtio.MTWEOFI, 1), (mtio.MTWEOF, 0)]
    d.close()
    assert tape.objects == [b"a", FM, b"b", FM]
    assert (mtio.MTWEOF, 1) not in mtops(ops)


def test_close_right_after_an_immediate_filemark_flushes_and_adds_no_filemark():
    d, ops, tape = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    d.close()
    assert tape.objects == [b"a", FM]
    assert ops.buffered == 0
    assert mtops(ops) == [(mtio.MTWEOFI, 1), (mtio.MTWEOF, 0)]


def test_close_after_sync_issues_nothing_more():
    d, ops, tape = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    d.sync()
    d.sync()  # nothing written since: no second flush
    d.close()
    assert mtops(ops) == [(mtio.MTWEOFI, 1), (mtio.MTWEOF, 0)]
    assert tape.objects == [b"a", FM]


def test_sync_without_writes_or_read_only_issues_nothing():
    d, ops, _ = make([b"a", FM])
    d.sync()
    assert d.read_record() == b"a"
    d.sync()
    assert mtops(ops) == []
    r, rops, _ = make([b"a", FM], readonly=True)
    r.sync()
    assert r.read_record() == b"a"
    r.sync()
    assert mtops(rops) == []


def test_sync_after_records_only_flushes_without_a_filemark():
    d, ops, tape = make()
    d.write_record(b"a")
    d.sync()
    assert tape.objects == [b"a"]
    assert mtops(ops) == [(mtio.MTWEOF, 0)]
    d.close()
    assert tape.objects == [b"a"]  # st was idle: no filemark at close


def test_move_after_an_immediate_filemark_flushes_first():
    d, ops, tape = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    d.rewind()
    assert mtops(ops) == [(mtio.MTWEOFI, 1), (mtio.MTWEOF, 0), (mtio.MTREW, 1)]
    assert tape.objects == [b"a", FM]
    assert d.read_record() == b"a"
    assert d.read_record() is Mark.FILEMARK


def test_sync_error_is_medium_io_error_and_the_position_must_be_re_established():
    d, ops, _ = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    ops.inject("mtop", oserr(errno.EIO))  # the buffered data could not be written
    with pytest.raises(MediumIOError) as info:
        d.sync()
    assert "flush" in str(info.value)
    with pytest.raises(MediumIOError, match="position unknown"):
        d.write_record(b"b")
    d.close()  # the error was reported once: close does not flush again
    assert mtops(ops).count((mtio.MTWEOF, 0)) == 1


def test_immediate_filemark_write_protected_and_early_warning():
    r, _, _ = make(readonly=True)
    with pytest.raises(WriteProtectedError):
        r.write_filemark(immediate=True)
    d, _, tape = make(capacity=100, early_warning=50)
    d.write_record(b"x" * 60)  # into the zone
    assert d.write_filemark(immediate=True) is WriteStatus.EARLY_WARNING
    assert tape.objects == [b"x" * 60, FM]


def test_a_write_error_after_an_immediate_filemark_fails_the_next_sync():
    # st reports an error of buffered (write-behind) data one call later: the write after an
    # immediate filemark may fail for the data before it, and the flush that follows succeeds
    d, ops, _ = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    ops.inject("write", oserr(errno.EIO))
    with pytest.raises(MediumIOError):
        d.write_record(b"b")
    with pytest.raises(MediumIOError, match="not confirmed"):
        d.sync()


def test_a_failed_flush_before_a_move_fails_the_next_sync():
    d, ops, _ = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    ops.inject("mtop", oserr(errno.EIO))  # the flush before the rewind
    with pytest.raises(MediumIOError, match="flush"):
        d.rewind()
    with pytest.raises(MediumIOError, match="not confirmed"):
        d.sync()


def test_a_failed_sync_is_reported_once():
    d, ops, tape = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    ops.inject("mtop", oserr(errno.EIO))
    with pytest.raises(MediumIOError, match="flush"):
        d.sync()
    d.rewind()
    d.locate(2)
    d.write_record(b"b")
    d.write_filemark(immediate=True)
    d.sync()  # what was written after the reported error is confirmed
    assert tape.objects == [b"a", FM, b"b", FM]


def test_a_status_error_after_an_immediate_filemark_fails_the_next_sync():
    # st may report the buffered data's error on MTIOCPOS / MTIOCGET (the backup asks for the
    # position right after its generation's filemark, for the next volume's append)
    d, ops, _ = make()
    d.write_record(b"a")
    d.write_filemark(immediate=True)
    ops.inject("mtpos", oserr(errno.EIO))
    with pytest.raises(MediumIOError):
        d.position()
    with pytest.raises(MediumIOError, match="not confirmed"):
        d.sync()
