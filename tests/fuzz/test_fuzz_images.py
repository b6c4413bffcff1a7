"""Fuzzing the tape image readers of tapesim (hw-sim) with hypothesis.

Arbitrary bytes, valid images with flipped / truncated / inserted bytes and "smart" mutations
(absurd length words, chunk headers and tgt block headers re-signed with a valid checksum) are
fed to:

* ``tapesim.simh.scan`` (never raises; ``strict=True``: only ``SimhFormatError``),
* ``SimDrive`` open + a read loop (only ``OSError`` EIO/ENOMEM, reaching end of data within
  ``object_count + 2`` reads) and an append at end of data (which repairs a damaged tail),
* the readers of ``tapesim.formats`` (simh, aws, tgt: ``read_events`` raises only
  ``TapeFormatError``, ``scan_image`` never raises, ``tgt.read_info`` only ``TapeFormatError``),
* ``tapesim info`` (exit 0, or 1 with one error line).

Each call must also stay within a memory bound (peak traced allocation at most the file size plus
the readers' fixed buffers: a length word must be checked against what is left of the file
before anything is allocated for it) and a time bound (no endless loop).

Crashing inputs found while writing this are kept in ``corpus/images/`` (see its README) and
replayed by :func:`test_corpus_regressions`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import signal
import struct
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapesim import mtio
from tapesim.cli import main as tapesim_main
from tapesim.drive import SimDrive
from tapesim.formats import Record, TapeFormatError, events_from
from tapesim.formats import aws as aws_fmt
from tapesim.formats import simh as simh_fmt
from tapesim.formats import tgt as tgt_fmt
from tapesim.simh import SimhFormatError, scan

FORMATS = {"simh": simh_fmt, "aws": aws_fmt, "tgt": tgt_fmt}
SUFFIX = {"simh": ".tap", "aws": ".aws", "tgt": ".tgt"}

# The readers' fixed buffers (formats open images with 1 MiB buffering) plus interpreter noise:
# a reader allocating for an unchecked 16 MiB length word goes far beyond this.
MEMORY_SLACK = (1 << 20) + (256 << 10)
# the low-level walkers on a plain open() (8 KiB buffer): a tight bound
WALK_SLACK = 32 << 10
# HET (compressed AWS) blocks: the decompressor's working memory (bzip2 -9 needs ~3.7 MB)
# and the decompressed block (at most 65,535 bytes, Hercules' limit)
DECOMPRESS_SLACK = (4 << 20) + (64 << 10)
TIME_LIMIT = 5.0  # seconds per call: tiny inputs, so anything near this is an endless loop

# TAPESIM_FUZZ_SCALE=50 multiplies every max_examples (a longer hunt; the default run is < 20 s)
SCALE = max(1, int(os.environ.get("TAPESIM_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

CORPUS = Path(__file__).parent / "corpus" / "images"

INTERESTING_WORDS = [
    0x00000000,
    0x00000001,
    0x00000002,
    0x00000003,
    0x0000FFFF,
    0x00010000,
    0x00FFFFFF,
    0x00FFFFFE,
    0x7FFFFFFF,
    0x80000000,
    0x80FFFFFF,
    0x81000000,
    0xFF000000,
    0xFFFEFFFF,
    0xFFFF0000,
    0xFFFFFFFE,
    0xFFFFFFFF,
    0x01000000,
]
INTERESTING_U64 = [0, 1, 47, 48, 1152, 1200, 0xFFFF, 0x00FFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1]


# ---------------------------------------------------------------- bounds


class TooSlow(Exception):
    pass


class Peak:
    bytes = 0


@contextlib.contextmanager
def measured(size: int) -> Iterator[Peak]:
    """Time-bound the body (TIME_LIMIT) and measure its peak traced allocation."""

    def alarm(signum: int, frame: Any) -> None:
        raise TooSlow(f"took more than {TIME_LIMIT} s (endless loop?)")

    result = Peak()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield result
    finally:
        result.bytes = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def bounded_call(fn: Callable[[], Any], size: int, slack: int = MEMORY_SLACK) -> Any:
    """``fn()`` within the time bound, and allocating (peak) at most ``size + slack`` bytes.

    tracemalloc sees every thread, so a stray allocation elsewhere (hypothesis' machinery) can
    inflate one measurement: a call over the bound is measured again and the smaller peak
    counts (an allocation for an unchecked length word happens every time).
    """
    peaks = []
    for _ in range(2):
        with measured(size) as peak:
            out = fn()
        peaks.append(peak.bytes)
        if peak.bytes <= size + slack:
            return out
    raise AssertionError(f"allocated {min(peaks)} bytes for a {size}-byte image")


@contextlib.contextmanager
def image_file(data: bytes, suffix: str) -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="fuzz-img-")
    try:
        p = Path(d) / f"img{suffix}"
        p.write_bytes(data)
        yield p
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- the properties


def check_simh_scan(path: Path) -> None:
    size = path.stat().st_size
    res = bounded_call(lambda: scan(path), size)  # documented: never raises on a damaged image
    assert res.file_size == size
    assert 0 <= res.end_offset <= size
    assert len(res.objects) <= size // 4
    prev_end = 0
    for o in res.objects:
        assert o.offset >= prev_end and o.end <= size
        prev_end = o.end
    assert res.end_offset == prev_end or (not res.objects and res.end_offset == 0)
    if res.truncated:
        assert res.damage and res.damage_offset is not None and res.damage_offset <= size

    def strict_scan() -> Any:
        try:
            return scan(path, strict=True)
        except SimhFormatError as e:
            return e

    strict = bounded_call(strict_scan, size)
    if isinstance(strict, SimhFormatError):
        assert res.truncated
    else:
        assert not res.truncated and strict.objects == res.objects
    # the streaming reader (formats.simh) agrees with the scanner
    objs, err = walk_bounded(simh_fmt.walk, path, size)
    got = [(o.kind, o.offset, o.length, o.error) for o in objs if o.kind != "eod"]
    want = [(o.kind.value, o.offset, o.length, o.error) for o in res.objects]
    assert got == want
    assert (err is not None) == res.truncated
    if err is not None:
        assert err.offset == res.damage_offset  # type: ignore[attr-defined]


def _walk_all(walker: Callable[..., Iterator[Any]], f: Any, **kw: Any) -> tuple[list[Any], TapeFormatError | None]:
    size = os.fstat(f.fileno()).st_size
    objs: list[Any] = []
    try:
        for o in walker(f, **kw):
            objs.append(o)
            assert len(objs) <= size + 2, "walker does not advance"
            if o.data is not None:
                assert len(o.data) == o.length
    except TapeFormatError as e:
        return objs, e
    assert objs and objs[-1].kind == "eod"
    return objs, None


def walk_bounded(
    walker: Callable[..., Iterator[Any]], path: Path, size: int, slack: int = WALK_SLACK, **kw: Any
) -> tuple[list[Any], TapeFormatError | None]:
    """A low-level walk within the tight memory bound."""

    def walk() -> tuple[list[Any], TapeFormatError | None]:
        with open(path, "rb") as f:
            return _walk_all(walker, f, **kw)

    return bounded_call(walk, size, slack)


def check_drive(path: Path) -> None:
    size = path.stat().st_size
    res = scan(path)
    got: dict[int, bytes | int] = {}  # position -> data read there, or the errno

    def read_all() -> None:
        got.clear()
        with SimDrive(path, readonly=True) as d:
            n = d.object_count
            assert n == len(res.objects) and d.truncated == res.truncated
            for _ in range(n + 2):
                p = d.mtpos()
                try:
                    got[p] = d.read(d.max_record)
                except OSError as e:
                    assert e.errno in (errno.EIO, errno.ENOMEM), e
                    got[p] = e.errno
                    if e.errno == errno.EIO and p == n:
                        break
                assert d.mtpos() == min(p + 1, n)
            else:
                pytest.fail("the read loop did not reach end of data")
            assert d.mtget().mt_gstat & mtio.GMT_EOD
            # spacing over everything and back ends at the right places
            fms = [i for i, o in enumerate(res.objects) if o.kind.value == "filemark"]
            d.mtop(mtio.MTREW)
            with contextlib.suppress(OSError):
                d.mtop(mtio.MTFSF, n + 1)
            assert d.mtpos() == n
            with contextlib.suppress(OSError):
                d.mtop(mtio.MTBSR, n + 1)
            assert d.mtpos() == (fms[-1] if fms else 0)

    bounded_call(read_all, size)
    n = len(res.objects)
    # what was read is what the streaming reader sees
    with open(path, "rb") as f:
        objs, _ = _walk_all(simh_fmt.walk, f)
    for i, o in enumerate(res.objects):
        if o.kind.value == "filemark":
            assert got[i] == b""
        elif o.error:
            assert got[i] == errno.EIO
        else:
            assert got[i] == objs[i].data
    assert got[n] == errno.EIO
    # appending at end of data repairs a damaged image
    with measured(size), SimDrive(path, implicit_filemarks=False) as d:
        d.mtop(mtio.MTEOM)
        d.write(b"appended")
    after = scan(path)
    assert not after.truncated
    assert after.objects[:-1] == res.objects and after.objects[-1].length == 8


def has_het_compression(data: bytes) -> bool:
    """Does any AWS chunk header (followed naively) announce HET compression?"""
    pos = 0
    while pos + 6 <= len(data):
        cur, _, f1, f2 = struct.unpack_from("<HHBB", data, pos)
        if f1 & 0x03 or f2 & 0x80:
            return True
        pos += 6 + cur
    return False


def check_format(path: Path, fmt: str) -> None:
    size = path.stat().st_size
    mod = FORMATS[fmt]
    extra = DECOMPRESS_SLACK if fmt == "aws" and has_het_compression(path.read_bytes()) else 0

    def read_all() -> None:
        n_events = 0
        try:
            for _ev in mod.read_events(path):
                n_events += 1
                assert n_events <= size + 1
        except TapeFormatError as e:
            assert str(e)

    bounded_call(read_all, size, MEMORY_SLACK + extra)
    res = bounded_call(lambda: mod.scan_image(path), size, MEMORY_SLACK + extra)  # never raises
    assert 0 <= res.end_offset <= size and res.file_size == size
    if res.truncated:
        assert res.damage and res.damage_offset is not None and 0 <= res.damage_offset <= size
    if fmt == "tgt":

        def info() -> None:
            try:
                mod.read_info(path)
            except TapeFormatError:
                pass

        bounded_call(info, size)
    for with_data in (True, False):
        walk_bounded(mod.walk, path, size, WALK_SLACK + extra, with_data=with_data)


def check_info(path: Path, fmt: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as ei:
        tapesim_main(["info", str(path), "--format", fmt, "--json"])
    assert ei.value.code in (0, 1), err.getvalue()
    if ei.value.code:
        e = err.getvalue()
        assert e.startswith("tapesim: error: ") and e.count("\n") == 1, e
    else:
        assert out.getvalue().startswith("{")


def check_all(data: bytes, fmt: str) -> None:
    with image_file(data, SUFFIX[fmt]) as p:
        if fmt == "simh":
            check_simh_scan(p)
            check_drive(p)
            p.write_bytes(data)
        check_format(p, fmt)
        check_info(p, fmt)


# ---------------------------------------------------------------- strategies


def build(fmt: str, items: list[bytes | None], chunk: int = 0xFFFF) -> bytes:
    f = io.BytesIO()
    if fmt == "simh":
        w: Any = simh_fmt.SimhWriter(f)
    elif fmt == "aws":
        w = aws_fmt.AwsWriter(f, chunk_size=chunk)
    else:
        w = tgt_fmt.TgtWriter(f, barcode="FUZZ01", serial="FUZZ01_0")
    for ev in events_from(items):
        w.write(ev)
    return f.getvalue()


items_st = st.lists(st.one_of(st.none(), st.binary(min_size=1, max_size=70)), max_size=6)


@st.composite
def valid_images(draw: Any, fmt: str) -> bytes:
    chunk = draw(st.sampled_from([0xFFFF, 7, 16])) if fmt == "aws" else 0xFFFF
    return build(fmt, draw(items_st), chunk)


def _offsets(fmt: str, data: bytes) -> list[int]:
    """Offsets of the headers / length words of a valid image."""
    with image_file(data, SUFFIX[fmt]) as p, open(p, "rb") as f:
        objs, _ = _walk_all(FORMATS[fmt].walk, f, with_data=False)
    offs = [o.offset for o in objs]
    if fmt == "simh":  # trailing length words too
        offs += [o.offset + 4 + o.length + (o.length & 1) for o in objs if o.kind == "record"]
    if fmt == "aws":  # every chunk header
        offs, pos = [], 0
        while pos + 6 <= len(data):
            offs.append(pos)
            pos += 6 + struct.unpack_from("<H", data, pos)[0]
    if fmt == "tgt":
        offs = [0, *offs]
    return offs


@st.composite
def mutated(draw: Any, fmt: str) -> bytes:
    data = bytearray(draw(valid_images(fmt)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "word", "header"]))
        n = len(data)
        if how == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif how == "truncate" and n:
            del data[draw(st.integers(0, n - 1)) :]
        elif how == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif how == "word" and n >= 4:
            i = draw(st.integers(0, n - 4))
            w = draw(st.sampled_from(INTERESTING_WORDS) | st.integers(0, 2**32 - 1))
            data[i : i + 4] = struct.pack("<I", w)
        elif how == "header":
            data = bytearray(_mutate_header(draw, fmt, bytes(data)))
    return bytes(data)


def _mutate_header(draw: Any, fmt: str, data: bytes) -> bytes:
    """Change a field of a real header (keeping a tgt header's checksum valid)."""
    try:
        offs = _offsets(fmt, data)
    except AssertionError:  # an earlier mutation broke it: no known headers
        offs = []
    offs = [o for o in offs if o + {"simh": 4, "aws": 6, "tgt": 48}[fmt] <= len(data)]
    if not offs:
        return data
    at = draw(st.sampled_from(offs))
    b = bytearray(data)
    if fmt == "simh":
        b[at : at + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING_WORDS)))
    elif fmt == "aws":
        cur, prv, f1, f2 = struct.unpack_from("<HHBB", b, at)
        field = draw(st.integers(0, 3))
        if field == 0:
            cur = draw(st.sampled_from([0, 1, 6, 0xFFFF, 0x8000]))
        elif field == 1:
            prv = draw(st.sampled_from([0, 1, 0xFFFF]))
        elif field == 2:
            f1 = draw(st.sampled_from([0, 0x80, 0x20, 0xA0, 0x40, 0xE0, 0x81, 0xA1, 0xA2, 0xA3, 0x60]))
        else:
            f2 = draw(st.sampled_from([0, 0x80, 0xFF]))
        struct.pack_into("<HHBB", b, at, cur, prv, f1, f2)
    else:
        body = list(tgt_fmt.HDR.unpack_from(b, at + 4))
        field = draw(st.integers(0, 6))
        if field == 2:  # blk_type
            body[2] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x10, 0x20, 0x40, 0x80, 0x7F]))
        elif field in (0, 1):  # sizes (u32)
            body[field] = draw(st.sampled_from([v for v in INTERESTING_U64 if v < 2**32] + [len(data)]))
        else:
            body[field] = draw(st.sampled_from([*INTERESTING_U64, len(data), at, at + 48]))
        b[at : at + 48] = tgt_fmt.pack_header(*body)
        if draw(st.booleans()) and len(b) >= tgt_fmt.FIRST_BLOCK:  # and/or the MAM's version
            struct.pack_into(">I", b, tgt_fmt.MAM_OFFSET, draw(st.sampled_from([0, 1, 2, 3, 2**32 - 1])))
    return bytes(b)


# ---------------------------------------------------------------- the fuzz tests


@pytest.mark.parametrize("fmt", ["simh", "aws", "tgt"])
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(fmt: str, data: bytes) -> None:
    check_all(data, fmt)


@pytest.mark.parametrize("fmt", ["simh", "aws", "tgt"])
@FUZZ
@given(data=st.data())
def test_mutated_images(fmt: str, data: st.DataObject) -> None:
    check_all(data.draw(mutated(fmt)), fmt)


@settings(FUZZ, max_examples=40 * SCALE)
@given(data=st.data())
def test_simh_words_anywhere(data: st.DataObject) -> None:
    """SIMH images made of interesting words only (markers, gaps, absurd lengths)."""
    words = data.draw(st.lists(st.sampled_from(INTERESTING_WORDS) | st.integers(0, 40), max_size=16))
    tail = data.draw(st.binary(max_size=6))
    check_all(b"".join(struct.pack("<I", w) for w in words) + tail, "simh")


@pytest.mark.parametrize("fmt", ["simh", "aws", "tgt"])
@settings(FUZZ, max_examples=25 * SCALE)
@given(items=items_st)
def test_valid_images_read_back(fmt: str, items: list[bytes | None]) -> None:
    """Sanity: unmutated images pass every check and read back exactly."""
    data = build(fmt, items, 16)
    check_all(data, fmt)
    with image_file(data, SUFFIX[fmt]) as p:
        got = [ev.data if isinstance(ev, Record) else None for ev in FORMATS[fmt].read_events(p)][:-1]
    assert got == items


# ---------------------------------------------------------------- regressions


def _corpus() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "README.md") if CORPUS.is_dir() else []


@pytest.mark.parametrize("case", _corpus(), ids=lambda p: p.name)
def test_corpus_regressions(case: Path) -> None:
    """Inputs that once crashed a reader (see corpus/images/README.md): every check passes."""
    fmt = {".tap": "simh", ".aws": "aws", ".het": "aws", ".tgt": "tgt"}[case.suffix]
    check_all(case.read_bytes(), fmt)


def test_corpus_is_present() -> None:
    assert _corpus(), "the regression corpus is missing"
