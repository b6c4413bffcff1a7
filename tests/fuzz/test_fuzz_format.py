"""Fuzzing the decoders and the engine paths that read media (see tests/fuzz/README.md).

Two levels:

* **items**: every decoder (label, generation header, chunk, trailer, end record, ``peek_item``,
  payload unpacking) on arbitrary bytes and on mutated valid items, with and without their CRCs
  made to match again;
* **media**: a small valid tapearc SIMH image (built with the API, deterministically), mutated
  record by record (bytes flipped, fields overwritten with CRCs fixed, records dropped,
  duplicated, swapped, cut, filemarks moved) or byte by byte in its SIMH framing, then read by
  ``scan_medium`` (trailer and deep), ``run_verify``, ``list_medium`` and ``restore`` of every
  generation the scan found.

The rules: only :class:`tapearc.errors.TapearcError` may escape; a restore never writes outside
the generation's volume (checked at every write, and the restored file is never larger than the
volume); every example is small and quick.

Failing inputs are kept under ``corpus/format/`` and replayed by :func:`test_corpus`: ``*.bin``
are item inputs (every decoder runs on them), ``*.tap.gz`` are whole images. With
``TAPEARC_FUZZ_SAVE=DIR`` a failing input is written to DIR (one file per distinct failure,
the smallest seen), ready to be moved into the corpus.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapearc import format as fmt
from tapearc.catalog.db import Catalog
from tapearc.engine import volume as volume_mod
from tapearc.engine.backup import BackupOptions, backup
from tapearc.engine.listing import list_medium
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.engine.scan import scan_medium
from tapearc.engine.verify import run_verify
from tapearc.errors import TapearcError
from tapearc.media import open_medium

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "format"
VECTORS = HERE.parents[1] / "formats" / "vectors"

# ------------------------------------------------------------------ budget

SCALE = float(os.environ.get("TAPEARC_FUZZ_SCALE", "1") or 1)
LONG = SCALE > 1


def fuzz_settings(examples: int) -> settings:
    """``examples`` in CI (derandomized: the same inputs every run); ``TAPEARC_FUZZ_SCALE=K``
    multiplies them and draws new random inputs each run."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=not LONG,
        database=None if not LONG else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ------------------------------------------------------------------ keeping failures


def _failure_key(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else "?"
    return hashlib.sha256(f"{type(e).__name__}@{where}".encode()).hexdigest()[:12]


def _save_failure(kind: str, data: bytes, e: BaseException) -> None:
    out = os.environ.get("TAPEARC_FUZZ_SAVE")
    if not out:
        return
    os.makedirs(out, exist_ok=True)
    ext = "bin" if kind == "item" else "tap.gz"
    path = Path(out) / f"{kind}-{_failure_key(e)}.{ext}"
    blob = data if kind == "item" else gzip.compress(data, mtime=0)
    if not path.exists() or path.stat().st_size > len(blob):
        path.write_bytes(blob)


# ------------------------------------------------------------------ items

DECODERS: list[Callable[[Any], Any]] = [
    fmt.peek_item,
    fmt.decode_label,
    fmt.decode_generation_header,
    fmt.decode_chunk,
    fmt.decode_chunk_header,
    fmt.decode_trailer,
    fmt.decode_trailer_end,
]
VALID_ITEMS = [
    (VECTORS / f"{n}.bin").read_bytes()
    for n in ("label", "generation-header", "chunk-plain", "chunk-zstd", "trailer", "trailer-end")
]


def fix_crcs(item: bytes | bytearray) -> bytes:
    """Recompute the header CRC (and a trailer's body CRC, and a chunk's payload CRC) of a
    modified item, so the change reaches the field checks behind the CRCs."""
    x = bytearray(item)
    if len(x) < 16:
        return bytes(x)
    hl = int.from_bytes(x[8:12], "little")
    if x[:8] == b"TATRAIL1" and hl == 100 and len(x) >= 100:
        x[88:92] = fmt.crc32c(bytes(x[100:])).to_bytes(4, "little")
    if 4 <= hl <= len(x):
        x[hl - 4 : hl] = fmt.crc32c(bytes(x[: hl - 4])).to_bytes(4, "little")
    return bytes(x)


def decode_everything(data: bytes) -> None:
    """Every decoder, and what the engine does with a decoded item next; only TapearcError may
    escape any of them."""
    try:
        for decode in DECODERS:
            try:
                out = decode(data)
            except TapearcError:
                continue
            if decode is fmt.decode_chunk:
                header, payload = out
                try:
                    raw = fmt.unpack_payload(header, payload)
                    assert len(raw) == header.raw_len
                except TapearcError:
                    pass
            elif decode is fmt.decode_trailer:
                try:
                    for _ in fmt.iter_trailer_digests(out):
                        pass
                except TapearcError:
                    pass
    except Exception as e:
        _save_failure("item", data, e)
        raise


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    x = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "int", "cut", "insert", "delete", "splice"]))
        n = len(x)
        if op == "flip" and n:
            x[draw(st.integers(0, n - 1))] ^= draw(st.integers(1, 255))
        elif op == "int" and n >= 8:  # a field: a boundary value of 1, 2, 4 or 8 bytes
            w = draw(st.sampled_from([1, 2, 4, 8]))
            at = draw(st.integers(0, max(0, min(n, 128) - w)))
            v = draw(st.sampled_from([0, 1, 2 ** (8 * w) - 1, 2 ** (8 * w - 1), 7, 100, 512, 4096]))
            x[at : at + w] = (v % 2 ** (8 * w)).to_bytes(w, "little")
        elif op == "cut":
            x = x[: draw(st.integers(0, n))]
        elif op == "insert":
            at = draw(st.integers(0, n))
            x[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and n:
            at = draw(st.integers(0, n - 1))
            del x[at : at + draw(st.integers(1, 16))]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            at = draw(st.integers(0, n))
            x[at:] = other[draw(st.integers(0, len(other))) :]
    return fix_crcs(x) if draw(st.booleans()) else bytes(x)


@fuzz_settings(1500)
@given(st.binary(max_size=400))
def test_items_arbitrary_bytes(data: bytes) -> None:
    decode_everything(data)


@fuzz_settings(800)
@given(st.sampled_from([b"TALABEL1", b"TAGENHD1", b"TACHUNK1", b"TATRAIL1", b"TATREND1"]), st.binary(max_size=300))
def test_items_after_a_magic(magic: bytes, rest: bytes) -> None:
    decode_everything(magic + rest)
    decode_everything(fix_crcs(magic + rest))


# ------------------------------------------------------------------ a small valid medium

BS = 4096
EPOCH = 1_700_000_000


def _volume_bytes(nblocks: int, seed: int) -> bytearray:
    """Compressible, varied, with zero blocks."""
    rng = random.Random(seed)
    out = bytearray()
    for _i in range(nblocks):
        kind = rng.randrange(4)
        if kind == 0:
            out += bytes(BS)
        elif kind == 1:
            out += bytes([rng.randrange(256)]) * BS
        else:
            word = rng.randbytes(rng.choice([3, 16, 61]))
            out += (word * (BS // len(word) + 1))[:BS]
    return out


def build_image(folder: Path) -> bytes:
    """Three generations: volume a full (zstd) and incremental (none), volume b full with a
    partial last block. Deterministic but for the UUIDs."""
    spec = f"sim:{folder / 'base.tap'}"
    a = folder / "a.img"
    b = folder / "b.img"
    va = _volume_bytes(14, 1)
    a.write_bytes(va)
    b.write_bytes(bytes(_volume_bytes(5, 2))[: 5 * BS - 777])
    small = {"block_size": BS, "record_size": 4096, "chunk_size": 16384}
    with Catalog(":memory:") as cat, open_medium(spec, write=True) as d:
        backup(str(a), d, cat, BackupOptions(**small, compress="zstd", volume_name="a"), clock=lambda: EPOCH)
        va[5 * BS : 5 * BS + 10] = b"changed!!!"
        va[9 * BS : 10 * BS] = bytes(BS)
        a.write_bytes(va)
        backup(str(a), d, cat, BackupOptions(**small, volume_name="a"), clock=lambda: EPOCH + 1)
        backup(str(b), d, cat, BackupOptions(**small, volume_name="b"), clock=lambda: EPOCH + 2)
    return (folder / "base.tap").read_bytes()


def parse_simh(b: bytes) -> list[bytes | None]:
    """Records (bytes) and filemarks (None) of a well-formed SIMH image."""
    objs: list[bytes | None] = []
    pos = 0
    while pos + 4 <= len(b):
        w = int.from_bytes(b[pos : pos + 4], "little")
        if w == 0:
            objs.append(None)
            pos += 4
            continue
        if w == 0xFFFFFFFF:
            break
        n = w & 0x00FFFFFF
        objs.append(b[pos + 4 : pos + 4 + n])
        pos += 8 + n + (n & 1)
    return objs


def build_simh(objs: list[bytes | None]) -> bytes:
    out = bytearray()
    for o in objs:
        if o is None:
            out += bytes(4)
        elif o:
            w = len(o).to_bytes(4, "little")
            out += w + o + (b"\0" if len(o) & 1 else b"") + w
    return bytes(out)


_BASE: dict[str, Any] = {}


def base_objects() -> list[bytes | None]:
    if "objs" not in _BASE:
        with tempfile.TemporaryDirectory() as d:
            image = build_image(Path(d))
        objs = parse_simh(image)
        assert build_simh(objs) == image
        _BASE["objs"] = objs
    return list(_BASE["objs"])


OPS = ["flip", "field", "drop", "dup", "swap", "fm_insert", "fm_drop", "cut_record", "cut_tape", "raw_flip", "raw_cut"]


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A few edits, with positions drawn as plain integers and taken modulo the size at hand."""
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(OPS))
        i = draw(st.integers(0, 2**16))
        j = draw(st.integers(0, 2**16))
        if op == "field":
            w = draw(st.sampled_from([1, 2, 4, 8]))
            v = draw(st.sampled_from([0, 1, 2, 7, 2 ** (8 * w) - 1, 2 ** (8 * w - 1), 4096, 65536]))
            ops.append((op, i, j, (w, v), draw(st.booleans())))
        else:
            ops.append((op, i, j, draw(st.integers(1, 255)), draw(st.booleans())))
    return ops


def apply_mutations(objs: list[bytes | None], ops: list[tuple[Any, ...]]) -> bytes:
    objs = list(objs)
    raw_ops = []
    for op, i, j, v, fix in ops:
        n = len(objs)
        if op.startswith("raw_"):
            raw_ops.append((op, i, j, v))
            continue
        if n == 0:
            continue
        k = i % n
        rec = objs[k]
        if op in ("flip", "field", "cut_record"):
            recs = [m for m, o in enumerate(objs) if o]
            if not recs:
                continue
            k = recs[i % len(recs)]
            x = bytearray(objs[k])  # type: ignore[arg-type]
            if op == "flip":
                x[j % len(x)] ^= v
            elif op == "field":
                w, val = v
                at = j % max(1, min(len(x), 128) - w + 1)
                x[at : at + w] = (val % 2 ** (8 * w)).to_bytes(w, "little")[: len(x) - at]
            else:
                x = x[: j % len(x)]
            objs[k] = fix_crcs(x) if fix and x[:2] == b"TA" else bytes(x)
        elif op == "drop":
            del objs[k]
        elif op == "dup":
            objs.insert(k, rec)
        elif op == "swap":
            m = j % n
            objs[k], objs[m] = objs[m], objs[k]
        elif op == "fm_insert":
            objs.insert(k, None)
        elif op == "fm_drop":
            marks = [m for m, o in enumerate(objs) if o is None]
            if marks:
                del objs[marks[i % len(marks)]]
        elif op == "cut_tape":
            del objs[k:]
    image = bytearray(build_simh(objs))
    for op, i, j, v in raw_ops:
        if not image:
            break
        if op == "raw_flip":
            image[i * 7919 % len(image)] ^= v
        else:
            del image[(i * 7919 + j) % len(image) :]
    return bytes(image)


class WriteOutOfRange(AssertionError):
    pass


@contextmanager
def guarded_target() -> Iterator[None]:
    """RestoreTarget checks every write against the volume size it was made for."""
    real_write = volume_mod.RestoreTarget.write_at
    real_zero = volume_mod.RestoreTarget.zero_range

    def write_at(self: Any, data: Any, offset: int) -> None:
        if offset < 0 or offset + len(memoryview(data)) > self.volume_size:
            raise WriteOutOfRange(f"write of {len(memoryview(data))} bytes at {offset}, volume {self.volume_size}")
        real_write(self, data, offset)

    def zero_range(self: Any, offset: int, length: int) -> None:
        if length > 0 and (offset < 0 or offset + length > self.volume_size):
            raise WriteOutOfRange(f"zero {length} bytes at {offset}, volume {self.volume_size}")
        real_zero(self, offset, length)

    volume_mod.RestoreTarget.write_at = write_at  # type: ignore[method-assign]
    volume_mod.RestoreTarget.zero_range = zero_range  # type: ignore[method-assign]
    try:
        yield
    finally:
        volume_mod.RestoreTarget.write_at = real_write  # type: ignore[method-assign]
        volume_mod.RestoreTarget.zero_range = real_zero  # type: ignore[method-assign]


def _quiet(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except TapearcError:
        return None


def exercise_image(image: bytes) -> None:
    """Everything that reads a medium, on ``image``; only TapearcError may escape."""
    try:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.tap"
            path.write_bytes(image)
            spec = f"sim:{path}"
            drive = _quiet(lambda: open_medium(spec, write=False))
            if drive is None:
                return
            with drive, Catalog(":memory:") as cat, guarded_target():
                _quiet(lambda: list_medium(drive))
                _quiet(lambda: scan_medium(drive, cat, deep=False))
                _quiet(lambda: run_verify(drive, cat))
                _quiet(lambda: scan_medium(drive, cat, deep=True))
                gens = [cat._gen(r) for r in cat.db.execute(Catalog._GEN_SELECT + " ORDER BY g.id")]
                for g in gens:
                    out = Path(d) / f"out-{g.id}.img"
                    res = _quiet(
                        lambda out=out, g=g: restore(
                            drive, cat, str(out), RestoreOptions(volume=g.volume, generation=g.number)
                        )
                    )
                    if out.exists():
                        assert res is not None, "a failed restore left its target behind"
                        assert out.stat().st_size == g.volume_size
                        out.unlink()
                    leftovers = [p.name for p in Path(d).iterdir() if p.name.endswith(".tapearc-partial")]
                    assert not leftovers, leftovers
    except Exception as e:
        _save_failure("image", image, e)
        raise


def test_base_image_is_valid() -> None:
    """The unmutated image: everything works, every generation restores."""
    image = build_simh(base_objects())
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.tap"
        path.write_bytes(image)
        with open_medium(f"sim:{path}", write=False) as drive, Catalog(":memory:") as cat:
            scan = scan_medium(drive, cat, deep=True)
            assert [(f.volume, f.generation, f.state) for f in scan.files] == [
                ("a", 1, "complete"), ("a", 2, "complete"), ("b", 1, "complete"),
            ]  # fmt: skip
            assert run_verify(drive, cat).ok
    exercise_image(image)


@fuzz_settings(300)
@given(mutations())
def test_mutated_medium(ops: list[tuple[Any, ...]]) -> None:
    exercise_image(apply_mutations(base_objects(), ops))


@fuzz_settings(800)
@given(st.data())
def test_mutated_items_of_the_medium(data: st.DataObject) -> None:
    """The records of a real medium, mutated, through every decoder."""
    seeds = [o for o in base_objects() if o] + VALID_ITEMS
    decode_everything(data.draw(mutated(seeds)))


# ------------------------------------------------------------------ the corpus

CORPUS_FILES = sorted(p for p in CORPUS.glob("*") if p.name.endswith((".bin", ".tap.gz")))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus(path: Path) -> None:
    """Inputs that once broke a rule, replayed."""
    if path.name.endswith(".bin"):
        decode_everything(path.read_bytes())
    else:
        exercise_image(gzip.decompress(path.read_bytes()))


def test_corpus_is_not_empty() -> None:
    assert CORPUS_FILES, f"no regression inputs under {CORPUS}"
