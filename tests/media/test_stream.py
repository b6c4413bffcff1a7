"""The stream medium ``-``: SIMH framing over a byte stream, in order only."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tapearc.errors import (
    MediumError,
    MediumIOError,
    MediumUnavailableError,
    RecordTooLargeError,
    TruncatedError,
    WriteProtectedError,
)
from tapearc.media import Mark, WriteStatus, open_medium
from tapearc.media.stream import MAX_STREAM_RECORD, StreamDrive

W = struct.Struct("<I")
EOM = W.pack(0xFFFFFFFF)

OBJECTS: list[bytes | Mark] = [
    b"label",
    Mark.FILEMARK,
    b"x" * 1001,
    b"y" * 4096,
    b"\x00",
    Mark.FILEMARK,
    Mark.FILEMARK,
    b"tail-without-filemark",
]


def write_objects(drive: StreamDrive, objs: list[bytes | Mark]) -> None:
    for o in objs:
        st = drive.write_filemark() if o is Mark.FILEMARK else drive.write_record(o)  # type: ignore[arg-type]
        assert st is WriteStatus.OK  # a stream never reports the early warning


def read_all(drive: StreamDrive) -> list[bytes | Mark]:
    out: list[bytes | Mark] = []
    while True:
        o = drive.read_record()
        if o is Mark.END_OF_DATA:
            return out
        out.append(o)


def framed(objs: list[bytes | Mark], *, eom: bool = True) -> bytes:
    parts = []
    for o in objs:
        if o is Mark.FILEMARK:
            parts.append(W.pack(0))
        else:
            assert isinstance(o, bytes)
            n = len(o)
            parts.append(W.pack(n) + o + (b"\x00" if n & 1 else b"") + W.pack(n))
    return b"".join(parts) + (EOM if eom else b"")


def stream_bytes(objs: list[bytes | Mark]) -> bytes:
    buf = io.BytesIO()
    d = StreamDrive(buf, write=True)
    write_objects(d, objs)
    d.close()
    return buf.getvalue()


def test_round_trip_and_framing() -> None:
    data = stream_bytes(OBJECTS)
    assert data == framed(OBJECTS)
    d = StreamDrive(io.BytesIO(data), write=False)
    assert read_all(d) == OBJECTS
    assert d.read_record() is Mark.END_OF_DATA  # again: stays at end of data
    st = d.status()
    assert st.at_eod is True and st.position.logical == len(OBJECTS)
    assert st.position.file == 3 and st.position.record == 1
    d.close()


def test_same_bytes_as_a_sim_image(tmp_path: Path) -> None:
    """What a stream carries is a sim: image followed by the end-of-medium word."""
    pytest.importorskip("tapesim.drive")
    img = tmp_path / "t.tap"
    with open_medium(f"sim:{img}", write=True) as sim:
        for o in OBJECTS:
            sim.write_filemark() if o is Mark.FILEMARK else sim.write_record(o)  # type: ignore[arg-type]
    assert stream_bytes(OBJECTS) == img.read_bytes() + EOM
    # and a saved stream opens as a sim: image
    saved = tmp_path / "saved.tap"
    saved.write_bytes(stream_bytes(OBJECTS))
    with open_medium(f"sim:{saved}", write=False) as sim:
        got = []
        while (o := sim.read_record()) is not Mark.END_OF_DATA:
            got.append(o)
    assert got == OBJECTS


def test_positions_while_writing() -> None:
    d = StreamDrive(io.BytesIO(), write=True)
    assert d.position().logical == 0
    d.write_record(b"a")
    d.write_record(b"b")
    d.write_filemark()
    d.write_record(b"c")
    p = d.position()
    assert (p.logical, p.file, p.record) == (4, 1, 1)
    st = d.status()
    assert st.at_eod and not st.early_warning and st.capacity is None and not st.write_protected
    d.close()


def test_write_only_stream_is_a_blank_medium() -> None:
    buf = io.BytesIO()
    d = StreamDrive(buf, write=True)
    d.rewind()  # no-op at the beginning
    assert d.read_record() is Mark.END_OF_DATA
    d.rewind()
    assert d.seek_end_of_data().logical == 0
    d.write_record(b"label")
    d.write_filemark()
    assert d.read_record() is Mark.END_OF_DATA  # always at its end of data
    assert d.seek_end_of_data().logical == 2
    d.locate(2)  # where it is: no-op
    assert d.space_files(0) == 0
    for move in (d.rewind, lambda: d.locate(0), lambda: d.space_files(1), lambda: d.space_files(-1)):
        with pytest.raises(MediumError, match="can only be read or written in order"):
            move()
    d.close()
    assert buf.getvalue() == framed([b"label", Mark.FILEMARK])


def test_read_only_stream_moves_only_forward() -> None:
    d = StreamDrive(io.BytesIO(framed(OBJECTS)), write=False)
    d.rewind()
    d.locate(0)
    assert d.read_record() == b"label"
    with pytest.raises(MediumError, match="can only be read or written in order") as info:
        d.rewind()
    assert info.value.medium == "-"
    with pytest.raises(MediumError, match="in order"):
        d.locate(0)
    with pytest.raises(MediumError, match="in order"):
        d.space_files(1)
    with pytest.raises(MediumError, match="in order"):
        d.seek_end_of_data()
    assert d.read_record() is Mark.FILEMARK  # still usable in order
    with pytest.raises(WriteProtectedError, match="open for reading"):
        d.write_record(b"x")
    with pytest.raises(WriteProtectedError):
        d.write_filemark()
    assert not d.writable and d.status().write_protected


def test_record_size_limits() -> None:
    d = StreamDrive(io.BytesIO(), write=True)
    assert d.max_record_size == MAX_STREAM_RECORD
    with pytest.raises(ValueError):
        d.write_record(b"")
    small = StreamDrive(io.BytesIO(), write=True, max_record_size=10)
    with pytest.raises(ValueError):
        small.write_record(b"x" * 11)
    # reading a record larger than the reader's maximum: RecordTooLargeError, past it
    r = StreamDrive(io.BytesIO(framed([b"x" * 11, b"ok", Mark.FILEMARK])), write=False, max_record_size=10)
    with pytest.raises(RecordTooLargeError) as info:
        r.read_record()
    assert info.value.record == 0
    assert r.read_record() == b"ok"
    assert r.read_record() is Mark.FILEMARK


@pytest.mark.parametrize(
    "cut, words",
    [
        (0, ["byte 0", "empty"]),
        (2, ["byte 2", "length word is cut"]),
        (4 + 3, ["byte 7", "cut after 3 bytes of data"]),
        (4 + 6 + 2, ["byte 12", "trailing length word is cut"]),
    ],
)
def test_cut_stream_names_the_byte_offset(cut: int, words: list[str]) -> None:
    data = framed([b"label!", Mark.FILEMARK])[:cut]
    d = StreamDrive(io.BytesIO(data), write=False)
    with pytest.raises(TruncatedError) as info:
        read_all(d)
    for w in words:
        assert w in str(info.value)
    assert "cut" in str(info.value)
    assert info.value.details["byte_offset"] == cut
    with pytest.raises(TruncatedError):  # stays failed
        d.read_record()


def test_missing_end_marker_is_a_cut_stream() -> None:
    data = framed(OBJECTS, eom=False)
    d = StreamDrive(io.BytesIO(data), write=False)
    got = []
    with pytest.raises(TruncatedError, match=f"ends at byte {len(data)}.*end-of-medium marker is missing"):
        while True:
            got.append(d.read_record())
    assert got == OBJECTS  # everything before the cut was read


def test_bad_framing() -> None:
    bad = W.pack(4) + b"abcd" + W.pack(5) + EOM
    with pytest.raises(MediumIOError, match=r"not a tape stream at byte 0.*length words differ"):
        StreamDrive(io.BytesIO(bad), write=False).read_record()
    with pytest.raises(MediumIOError, match="reserved marker"):
        StreamDrive(io.BytesIO(W.pack(0xFF000001) + EOM), write=False).read_record()
    with pytest.raises(MediumIOError, match="invalid length word"):
        StreamDrive(io.BytesIO(W.pack(0x01000000) + EOM), write=False).read_record()


def test_simh_gaps_and_error_flag() -> None:
    flagged = W.pack(3 | 0x80000000) + b"abc" + b"\x00" + W.pack(3 | 0x80000000)
    data = (
        W.pack(0xFFFFFFFE)  # erase gap
        + framed([b"one"], eom=False)
        + W.pack(0xFFFF0000)  # reverse half gap: skipped as a whole word reading forward
        + flagged
        + framed([b"two", Mark.FILEMARK])
    )
    d = StreamDrive(io.BytesIO(data), write=False)
    assert d.read_record() == b"one"
    with pytest.raises(MediumIOError, match="flagged as bad"):
        d.read_record()
    assert d.read_record() == b"two"  # past the bad record
    assert d.position().logical == 3
    assert d.read_record() is Mark.FILEMARK
    assert d.read_record() is Mark.END_OF_DATA


def test_forward_half_gap_resynchronises_two_bytes_on() -> None:
    # a forward half gap: the next word starts two bytes on, so the FHGAP's last two bytes
    # ("\xfe\xff") and the next two ("\xff\xff") read as an erase gap (0xFFFFFFFE)
    data = W.pack(0xFFFEFFFF) + b"\xff\xff" + framed([b"after", Mark.FILEMARK])
    d = StreamDrive(io.BytesIO(data), write=False)
    assert d.read_record() == b"after"
    assert d.read_record() is Mark.FILEMARK
    assert d.read_record() is Mark.END_OF_DATA


def test_close_writes_the_end_marker_only_after_success() -> None:
    ok = io.BytesIO()
    with StreamDrive(ok, write=True) as d:
        d.write_record(b"a")
    assert ok.getvalue().endswith(EOM)

    failed = io.BytesIO()
    with pytest.raises(RuntimeError), StreamDrive(failed, write=True) as d:
        d.write_record(b"a")
        raise RuntimeError("job failed")
    assert failed.getvalue() == framed([b"a"], eom=False)

    # close() called while an exception is on its way out (the CLI's try/finally)
    failed2 = io.BytesIO()
    d = StreamDrive(failed2, write=True)
    with pytest.raises(RuntimeError):
        try:
            d.write_record(b"a")
            raise RuntimeError("job failed")
        finally:
            d.close()
    assert not failed2.getvalue().endswith(EOM)
    with pytest.raises(TruncatedError):
        read_all(StreamDrive(io.BytesIO(failed2.getvalue()), write=False))

    aborted = io.BytesIO()
    d = StreamDrive(aborted, write=True)
    d.write_record(b"a")
    d.abort()
    d.close()  # idempotent
    assert not aborted.getvalue().endswith(EOM)


def test_through_an_os_pipe() -> None:
    r, w = os.pipe()
    objs: list[bytes | Mark] = [os.urandom(70000), Mark.FILEMARK] * 20 + [b"z" * 3, Mark.FILEMARK]

    def writer() -> None:
        with StreamDrive(os.fdopen(w, "wb"), write=True, owns=True) as d:
            write_objects(d, objs)

    t = threading.Thread(target=writer)
    t.start()
    with StreamDrive(os.fdopen(r, "rb"), write=False, owns=True) as d:
        assert read_all(d) == objs
    t.join()


def test_broken_pipe_is_a_medium_io_error() -> None:
    r, w = os.pipe()
    os.close(r)
    d = StreamDrive(os.fdopen(w, "wb", buffering=0), write=True, owns=True)
    with pytest.raises(MediumIOError, match="broken pipe"):
        for _ in range(100):
            d.write_record(b"x" * 65536)
    d.abort()


def test_open_medium_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(framed(OBJECTS)))
    monkeypatch.setattr(sys, "stdin", fake)
    d = open_medium("-", write=False)
    assert isinstance(d, StreamDrive) and d.name == "-" and not d.writable
    assert read_all(d) == OBJECTS
    d.close()


class _FakeStdout(io.TextIOWrapper):
    def fileno(self) -> int:
        raise io.UnsupportedOperation("no fileno")


def test_open_medium_dash_writes_standard_output(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", _FakeStdout(raw))
    d = open_medium("-", write=True)
    assert isinstance(d, StreamDrive) and d.writable
    assert d.read_record() is Mark.END_OF_DATA
    write_objects(d, OBJECTS)
    d.close()
    assert raw.getvalue() == framed(OBJECTS)


def test_terminals_are_refused() -> None:
    import pty

    master, slave = pty.openpty()
    try:
        code = (
            "import sys\n"
            "from tapearc.media import open_medium\n"
            "from tapearc.errors import MediumUnavailableError\n"
            "try:\n"
            "    open_medium('-', write=sys.argv[1] == 'w')\n"
            "except MediumUnavailableError as e:\n"
            "    sys.stderr.write(str(e)); sys.exit(7)\n"
        )
        p = subprocess.run([sys.executable, "-c", code, "w"], stdout=slave, stderr=subprocess.PIPE, timeout=60)
        assert p.returncode == 7 and b"standard output, which is a terminal" in p.stderr
        p = subprocess.run(
            [sys.executable, "-c", code, "r"],
            stdin=slave,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
        assert p.returncode == 7 and b"standard input, which is a terminal" in p.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_standard_output_is_taken_by_the_stream() -> None:
    """Once the stream holds standard output, anything else printed goes to standard error."""
    code = (
        "import sys\n"
        "from tapearc.media import open_medium\n"
        "print('before', flush=True)\n"
        "d = open_medium('-', write=True)\n"
        "print('a message after opening')\n"
        "d.write_record(b'rec'); d.write_filemark()\n"
        "print('another', flush=True)\n"
        "d.close()\n"
        "print('after close')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"before\n" + framed([b"rec", Mark.FILEMARK])
    assert b"a message after opening" in p.stderr and b"after close" in p.stderr


def test_open_medium_dash_unavailable_without_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(MediumUnavailableError, match="standard input"):
        open_medium("-", write=False)


class _CountingBuffer(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_immediate_filemark_stays_buffered_until_sync() -> None:
    buf = _CountingBuffer()
    d = StreamDrive(buf, write=True)
    d.write_record(b"a")
    assert d.write_filemark(immediate=True) is WriteStatus.OK
    assert buf.flushes == 0
    assert d.position().file == 1
    d.sync()
    assert buf.flushes == 1
    assert d.write_filemark() is WriteStatus.OK  # the synchronous one flushes at once
    assert buf.flushes == 2
    d.close()
    assert buf.getvalue() == framed([b"a", Mark.FILEMARK, Mark.FILEMARK])


def test_sync_fsyncs_a_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    with open(tmp_path / "s.tap", "wb") as fh:
        d = StreamDrive(fh, write=True)
        d.write_record(b"a")
        d.write_filemark(immediate=True)
        d.sync()
        fd = fh.fileno()
        assert fsyncs == [fd]
        assert (tmp_path / "s.tap").read_bytes() == framed([b"a", Mark.FILEMARK], eom=False)
        d.close()
    r = StreamDrive(io.BytesIO(framed([b"a"])), write=False)
    r.sync()  # reading: nothing to do
    assert fsyncs == [fd]


def test_sync_of_a_pipe_flushes_without_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    rfd, wfd = os.pipe()
    with os.fdopen(rfd, "rb") as rd, os.fdopen(wfd, "wb") as wr:
        d = StreamDrive(wr, write=True)
        d.write_record(b"a")
        d.write_filemark(immediate=True)
        d.sync()
        assert fsyncs == []
        assert rd.read(len(framed([b"a", Mark.FILEMARK], eom=False))) == framed([b"a", Mark.FILEMARK], eom=False)
        d.close()
