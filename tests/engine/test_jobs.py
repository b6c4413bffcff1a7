"""Jobs (tapearc.engine.jobs, jobfile): the volumes of a job file backed up one after the other in
one run, onto one simulated medium or a small simulated library (spanning tapes); each restored
byte for byte. A failing volume does not stop the others; a medium that fills with no next one
stops the run; Ctrl-C interrupts the current volume; full_every by runs and by days; --full;
every job-file error names the file, the table and the key."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tapearc.catalog.db import Catalog
from tapearc.engine.jobfile import JobSpec, read_job
from tapearc.engine.jobs import JobRun, append_summary, run_job
from tapearc.engine.mediasource import MediaSource
from tapearc.engine.progress import NoProgress, Progress
from tapearc.engine.restore import RestoreOptions, restore
from tapearc.errors import JobFileError, JobPartialError
from tests.nbdsupport import needs_qemu_nbd, qemu_img, qemu_io, qemu_nbd

BS = 16 * 1024
DAY = 86400


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def write(path: Path, seed: int, size: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def change(path: Path, seed: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[BS * seed : BS * seed + 100] = random.Random(seed).randbytes(100)
    path.write_bytes(bytes(data))
    return bytes(data)


def toml_value(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def job_file(
    tmp: Path, job: dict[str, Any], volumes: list[dict[str, Any]], defaults: dict[str, Any] | None = None
) -> str:
    """A job file written by hand (the tests read it back with tomllib through read_job)."""
    lines = ["[job]", *(f"{k} = {toml_value(v)}" for k, v in job.items())]
    if defaults:
        lines += ["[defaults]", *(f"{k} = {toml_value(v)}" for k, v in defaults.items())]
    for vol in volumes:
        lines += ["[[volume]]", *(f"{k} = {toml_value(v)}" for k, v in vol.items())]
    path = tmp / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(path: str, *, full: bool = False, at: str | None = None, **kw: Any) -> JobRun:
    job = read_job(path)
    clock = (lambda: float(ts(at))) if at else None
    with Catalog() as cat, MediaSource(job.media, write=True, catalog=cat) as media:
        extra: dict[str, Any] = {"clock": clock} if clock else {}
        return run_job(job, media, cat, full=full, now=ts(at) if at else None, **extra, **kw)


def restored(spec: str, tmp: Path, volume: str, **kw: Any) -> bytes:
    out = tmp / f"out-{volume}.img"
    out.unlink(missing_ok=True)
    with Catalog() as cat, MediaSource(spec, write=False, catalog=cat) as media:
        restore(media, cat, str(out), RestoreOptions(volume=volume, **kw))
    return out.read_bytes()


def outcomes(r: JobRun) -> list[tuple[str, str, str | None]]:
    return [(v.name, str(v.outcome), v.kind) for v in r.volumes]


# ---------------------------------------------------------------- one run, several volumes


@needs_qemu_nbd
def test_files_and_an_nbd_export_onto_one_medium(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    a = write(tmp_path / "a.img", 1, 40 * BS)
    n = write(tmp_path / "n.img", 2, 24 * BS)
    c = write(tmp_path / "c.img", 3, 7 * BS + 1234)  # not a whole number of blocks
    with qemu_nbd(tmp_path / "n.img") as uri:
        path = job_file(
            tmp_path,
            {"name": "nightly", "media": spec},
            [
                {"name": "a", "source": "a.img", "compress": "zstd"},
                {"name": "vm", "source": uri, "verify": True},
                {"name": "c", "source": str(tmp_path / "c.img")},
            ],
            defaults={"block_size": "16K"},
        )
        r = run(path)
    assert r.ok and r.error() is None and r.stopped is None
    assert outcomes(r) == [("a", "ok", "full"), ("vm", "ok", "full"), ("c", "ok", "full")]
    assert [v.generation for v in r.volumes] == [1, 1, 1]
    assert [v.bytes_read for v in r.volumes] == [len(a), len(n), len(c)]
    assert all(v.bytes_written > 0 and v.media == [r.volumes[0].media[0]] for v in r.volumes)
    assert r.volumes[0].result is not None and r.volumes[0].result.compression == "zstd"
    assert r.volumes[1].result is not None and r.volumes[1].result.verified  # verify = true read it back
    assert [p["tape_file"] for v in r.volumes for p in v.result.parts] == [1, 2, 3]  # type: ignore[union-attr]
    for name, data in (("a", a), ("vm", n), ("c", c)):
        assert restored(spec, tmp_path, name) == data


@needs_qemu_nbd
def test_dirty_bitmap_of_a_job_volume(tmp_path: Path, _private_catalog: Path) -> None:
    """A job volume with dirty_bitmap: the second run reads only what the qemu bitmap marks dirty
    (trusted, as backup --dirty-bitmap); each generation restores as the image was."""
    spec = f"sim:{tmp_path / 't.tap'}"
    img = tmp_path / "vm.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(img), "8M")
    qemu_io(img, "qcow2", "write -P 0x11 0 2M", "write -P 0x22 6M 512k")
    qemu_img("bitmap", "--add", str(img), "b0")
    write(tmp_path / "a.img", 1, 8 * BS)
    states = []
    for n, writes in enumerate((None, ("write -P 0x33 1M 64k", "write -P 0x44 7M 64k"))):
        if writes:
            qemu_io(img, "qcow2", *writes)
        with qemu_nbd(img, "qcow2", bitmap="b0", shared=1) as uri:
            vols = [{"name": "vm", "source": uri, "dirty_bitmap": "b0"}, {"name": "a", "source": "a.img"}]
            r = run(job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": "64K"}))
        assert r.ok, [(v.name, v.error) for v in r.volumes]
        res = r.volumes[0].result
        assert res is not None and res.change is not None and res.change["checkpoint"] == "dirty-bitmap:b0"
        if n == 1:
            assert r.volumes[0].kind == "incremental" and res.change["trusted"] is True
            assert r.volumes[0].bytes_read == 2 * 64 * 1024  # the two dirty granules, nothing else
        out = tmp_path / "raw.img"
        qemu_img("convert", "-O", "raw", str(img), str(out))
        states.append(out.read_bytes())
    for g, want in enumerate(states, 1):
        assert restored(spec, tmp_path, "vm", generation=g) == want


def test_job_spans_the_tapes_of_a_library(tmp_path: Path, _private_catalog: Path) -> None:
    lib_mod = pytest.importorskip("tapesim.library")
    lib_mod.create_library(str(tmp_path / "lib"), 6, 1536 * 1024, early_warning=256 * 1024, max_record=1024 * 1024)
    spec = f"sim:{tmp_path / 'lib'}"
    datas = {"a": write(tmp_path / "a.img", 1, 2 * 1024 * 1024), "b": write(tmp_path / "b.img", 2, 1024 * 1024)}
    datas["c"] = write(tmp_path / "c.img", 3, 300 * 1024)
    path = job_file(
        tmp_path,
        {"name": "lib", "media": spec, "record_size": "64K"},
        [{"name": k, "source": f"{k}.img"} for k in datas],
        defaults={"block_size": BS, "chunk_size": "256K"},
    )
    r = run(path)
    assert r.ok, [(v.name, v.error) for v in r.volumes]
    media = [v.media for v in r.volumes]
    assert media[0][:2] == ["TAP001", "TAP002"]  # a spans tapes, b starts where a ended
    assert media[1][0] == media[0][-1] and len({m for ms in media for m in ms}) >= 3
    for name in ("c", "b", "a"):  # a's restore leaves TAP002 in the drive, not the set's last tape
        assert restored(spec, tmp_path, name) == datas[name]
    assert r.notes == []
    # a second run: the job loads the set's last tape, and appends incrementals to it
    change(tmp_path / "b.img", 3)
    r2 = run(path)
    assert outcomes(r2) == [("a", "ok", "incremental"), ("b", "ok", "incremental"), ("c", "ok", "incremental")]
    last = media[-1][-1]
    assert len(r2.notes) == 1 and "held sequence 2 (TAP002)" in r2.notes[0] and f"({last}), to append to" in r2.notes[0]
    assert all(v.media == [last] for v in r2.volumes)
    assert restored(spec, tmp_path, "b") == (tmp_path / "b.img").read_bytes()


# ---------------------------------------------------------------- failures


def test_a_failing_volume_does_not_stop_the_others(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    a = write(tmp_path / "a.img", 1, 10 * BS)
    c = write(tmp_path / "c.img", 3, 10 * BS)
    (tmp_path / "folder").mkdir()
    vols = [
        {"name": "a", "source": "a.img"},
        {"name": "gone", "source": "gone.img"},
        {"name": "dir", "source": "folder"},
        {"name": "c", "source": "c.img"},
    ]
    r = run(job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": BS}))
    assert outcomes(r) == [("a", "ok", "full"), ("gone", "failed", None), ("dir", "failed", None), ("c", "ok", "full")]
    assert r.stopped is None and not r.ok
    gone, folder = r.volumes[1].error, r.volumes[2].error
    assert gone is not None and gone.exit_code == 3 and "gone.img" in str(gone)
    assert folder is not None and folder.exit_code == 3
    err = r.error()
    assert isinstance(err, JobPartialError) and err.exit_code == 35
    assert "2 of 4 volumes" in str(err) and "gone (failed: exit 3 source)" in str(err) and "dir (failed" in str(err)
    doc = r.to_json()
    assert doc["exit_code"] == 35 and doc["ok"] is False
    assert [v["outcome"] for v in doc["volumes"]] == ["ok", "failed", "failed", "ok"]  # type: ignore[index]
    assert restored(spec, tmp_path, "a") == a and restored(spec, tmp_path, "c") == c


def test_a_source_failing_mid_backup_fails_that_volume_only(
    tmp_path: Path, _private_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b.img fails with EIO after its first chunk: its generation is closed incomplete on the
    medium, and c is backed up after it on the same medium."""
    from tapearc.errors import SourceError
    from tapearc.sources.file import SourceVolume

    read = SourceVolume.readinto_at

    def failing(self: SourceVolume, buf: memoryview, offset: int) -> int:
        if str(self.path).endswith("b.img") and offset > 0:
            raise SourceError(f"reading source {self.path} at byte {offset} failed: Input/output error")
        return read(self, buf, offset)

    monkeypatch.setattr(SourceVolume, "readinto_at", failing)
    spec = f"sim:{tmp_path / 't.tap'}"
    datas = {n: write(tmp_path / f"{n}.img", i, 40 * BS) for i, n in enumerate("abc", 1)}
    vols = [{"name": n, "source": f"{n}.img"} for n in "abc"]
    job = {"name": "j", "media": spec, "record_size": "64K"}
    r = run(job_file(tmp_path, job, vols, {"block_size": BS, "chunk_size": "256K"}))
    assert outcomes(r) == [("a", "ok", "full"), ("b", "failed", None), ("c", "ok", "full")]
    err = r.volumes[1].error
    assert err is not None and err.exit_code == 3 and "Input/output error" in str(err)
    assert err.hint is not None and "marked incomplete" in err.hint
    assert [p["tape_file"] for p in r.volumes[2].result.parts] == [3]  # type: ignore[union-attr]
    with Catalog() as cat:
        from tapearc.catalog.views import media_sets

        (mset,) = media_sets(cat)
        states = [(g.volume, g.state) for g in cat.generations(mset)]
        assert states == [("a", "complete"), ("b", "incomplete"), ("c", "complete")]
    assert restored(spec, tmp_path, "a") == datas["a"] and restored(spec, tmp_path, "c") == datas["c"]


def test_a_lying_tracker_found_by_verify_unchanged(tmp_path: Path, _private_catalog: Path) -> None:
    """changed_blocks (a JSON file saying its own checkpoints) with verify_unchanged: the blocks the
    file missed are stored anyway and reported; the volume is backed up (ok) but the run is not
    clean (exit 35, the volume's error tracker-missed, exit 27 as backup's)."""
    k64 = 64 * 1024
    spec = f"sim:{tmp_path / 't.tap'}"
    vol = tmp_path / "v.img"
    data = bytearray(b"".join(bytes([i + 1]) * k64 for i in range(32)))
    vol.write_bytes(bytes(data))
    changes = tmp_path / "c.json"
    changes.write_text(json.dumps({"since": "cp0", "until": "cp1", "changed": []}))
    vols = [{"name": "v", "source": "v.img", "changed_blocks": "c.json", "verify_unchanged": True}]
    path = job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": "64K"})
    r1 = run(path)
    assert r1.ok and r1.volumes[0].kind == "full"
    data[3 * k64 : 4 * k64] = b"\x77" * k64  # in the file
    data[20 * k64 : 22 * k64] = b"\x55" * (2 * k64)  # missed by the file
    vol.write_bytes(bytes(data))
    changes.write_text(json.dumps({"since": "cp1", "until": "cp2", "changed": [[3 * k64, k64]]}))
    r2 = run(path)
    v = r2.volumes[0]
    assert (v.outcome, v.kind) == ("ok", "incremental") and v.error is not None
    assert v.error.exit_code == 27 and "called 2 changed blocks unchanged (blocks 20-21" in str(v.error)
    err = r2.error()
    assert not r2.ok and err is not None and err.exit_code == 35
    assert "1 of 1 volumes not backed up or with an error: v (ok: exit 27 tracker-missed)" in str(err)
    assert restored(spec, tmp_path, "v") == bytes(data)


def test_a_medium_that_fills_up_stops_the_run(tmp_path: Path, _private_catalog: Path) -> None:
    from tapesim.drive import create_image

    img = tmp_path / "small.tap"
    create_image(str(img), capacity=1024 * 1024, early_warning=256 * 1024)
    write(tmp_path / "a.img", 1, 10 * BS)
    write(tmp_path / "big.img", 2, 2 * 1024 * 1024)
    write(tmp_path / "c.img", 3, 10 * BS)
    vols = [{"name": n, "source": f"{n}.img"} for n in ("a", "big", "c")]
    job = {"name": "j", "media": f"sim:{img}", "record_size": "64K"}
    r = run(job_file(tmp_path, job, vols, {"block_size": BS, "chunk_size": "256K"}))
    assert outcomes(r) == [("a", "ok", "full"), ("big", "failed", None), ("c", "not-run", None)]
    big = r.volumes[1].error
    assert big is not None and big.exit_code == 12  # medium-full: no next medium
    assert r.stopped is not None and "'big'" in r.stopped
    assert "c (not-run)" in str(r.error())
    with Catalog() as cat:
        from tapearc.catalog.views import media_sets

        (mset,) = media_sets(cat)
        assert [(g.volume, g.state) for g in cat.generations(mset)] == [("a", "complete"), ("big", "incomplete")]
    assert restored(f"sim:{img}", tmp_path, "a") == (tmp_path / "a.img").read_bytes()


def test_a_bug_stops_the_run(tmp_path: Path, _private_catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception in a volume's backup: that volume fails (internal), the run stops
    (nothing is known to be safe), the exception is kept for the command to report."""
    import tapearc.engine.jobs as jobs_mod

    real = jobs_mod.backup

    def buggy(source: str, *a: Any, **kw: Any) -> Any:
        if source.endswith("b.img"):
            raise ZeroDivisionError("a bug")
        return real(source, *a, **kw)

    monkeypatch.setattr(jobs_mod, "backup", buggy)
    spec = f"sim:{tmp_path / 't.tap'}"
    for i, n in enumerate("abc"):
        write(tmp_path / f"{n}.img", i, 4 * BS)
    vols = [{"name": n, "source": f"{n}.img"} for n in "abc"]
    r = run(job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": BS}))
    assert outcomes(r) == [("a", "ok", "full"), ("b", "failed", None), ("c", "not-run", None)]
    assert isinstance(r.internal, ZeroDivisionError) and r.volumes[1].error is not None
    assert r.volumes[1].error.kind == "internal" and "ZeroDivisionError: a bug" in str(r.volumes[1].error)
    assert r.stopped is not None and "internal error" in r.stopped and r.error() is not None


class _CtrlC(NoProgress):
    """A progress display that is handed a Ctrl-C once the backup has read some bytes."""

    def advance(self, nbytes: int) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_interrupts_the_current_volume_the_rest_not_run(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    a = write(tmp_path / "a.img", 1, 10 * BS)
    for n in ("b", "c"):
        write(tmp_path / f"{n}.img", 2, 10 * BS)
    vols = [{"name": n, "source": f"{n}.img"} for n in ("a", "b", "c")]

    def progress(name: str) -> Progress:
        return _CtrlC() if name == "b" else NoProgress()

    r = run(job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": BS}), progress=progress)
    assert outcomes(r) == [("a", "ok", "full"), ("b", "interrupted", None), ("c", "not-run", None)]
    err = r.error()
    assert r.interrupted and err is not None and err.exit_code == 130
    with Catalog() as cat:
        from tapearc.catalog.views import media_sets

        (mset,) = media_sets(cat)
        assert [(g.volume, g.state) for g in cat.generations(mset)] == [("a", "complete"), ("b", "incomplete")]
    assert restored(spec, tmp_path, "a") == a
    # the next run carries on: b and c are backed up (b as a full: it has no complete generation)
    r2 = run(job_file(tmp_path, {"name": "j", "media": spec}, vols, {"block_size": BS}))
    assert outcomes(r2) == [("a", "ok", "incremental"), ("b", "ok", "full"), ("c", "ok", "full")]


# ---------------------------------------------------------------- fulls


def test_full_every_runs(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    write(tmp_path / "a.img", 1, 20 * BS)
    write(tmp_path / "b.img", 2, 20 * BS)
    vols = [{"name": "a", "source": "a.img"}, {"name": "b", "source": "b.img", "full_every": 2}]
    path = job_file(tmp_path, {"name": "j", "media": spec, "full_every": 3}, vols, {"block_size": BS})
    kinds = []
    for i in range(6):
        change(tmp_path / "a.img", i + 1)
        r = run(path)
        assert r.ok
        kinds.append((r.volumes[0].kind, r.volumes[1].kind))
        if i == 3:
            assert r.volumes[0].full_reason == "full_every 3: 3 runs since the last full (itself included)"
    f, i_ = "full", "incremental"
    assert kinds == [(f, f), (i_, i_), (i_, f), (f, i_), (i_, f), (i_, i_)]
    assert restored(spec, tmp_path, "a") == (tmp_path / "a.img").read_bytes()


def test_full_every_days_by_now(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    write(tmp_path / "a.img", 1, 20 * BS)
    path = job_file(
        tmp_path,
        {"name": "j", "media": spec, "full_every": "7d"},
        [{"name": "a", "source": "a.img"}],
        {"block_size": BS},
    )
    days = ["2026-12-01T02:00Z", "2026-12-04T02:00Z", "2026-12-08T01:59:59Z", "2026-12-08T02:00Z", "2026-12-09T02:00Z"]
    kinds = []
    for n, at in enumerate(days):
        change(tmp_path / "a.img", n + 1)
        r = run(path, at=at)
        assert r.ok and r.now == ts(at)
        kinds.append(r.volumes[0].kind)
    assert kinds == ["full", "incremental", "incremental", "full", "incremental"]
    with Catalog() as cat:
        from tapearc.catalog.views import media_sets

        (mset,) = media_sets(cat)
        assert [g.created for g in cat.generations(mset)] == [ts(d) for d in days]  # dated by --now
    # restore by date picks the generation of that night
    assert restored(spec, tmp_path, "a", at=ts("2026-12-08T03:00Z")) == restored(spec, tmp_path, "a", generation=4)


def test_full_forces_fulls(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    write(tmp_path / "a.img", 1, 20 * BS)
    path = job_file(tmp_path, {"name": "j", "media": spec}, [{"name": "a", "source": "a.img"}], {"block_size": BS})
    assert run(path).volumes[0].kind == "full"
    assert run(path).volumes[0].kind == "incremental"
    r = run(path, full=True)
    assert (r.volumes[0].kind, r.volumes[0].full_reason, r.volumes[0].generation) == ("full", "--full", 3)
    assert r.volumes[0].result is not None and r.volumes[0].result.base_generation == 0


def test_summary_log_gets_one_line_per_run(tmp_path: Path, _private_catalog: Path) -> None:
    spec = f"sim:{tmp_path / 't.tap'}"
    write(tmp_path / "a.img", 1, 4 * BS)
    vols = [{"name": "a", "source": "a.img"}, {"name": "x", "source": "missing.img"}]
    path = job_file(tmp_path, {"name": "j", "media": spec, "summary_log": "log/summary.jsonl"}, vols)
    job = read_job(path)
    assert job.summary_log == str(tmp_path / "log" / "summary.jsonl")  # relative to the job file
    (tmp_path / "log").mkdir()
    for _ in range(2):
        append_summary(job.summary_log, run(path))
    lines = (tmp_path / "log" / "summary.jsonl").read_text().splitlines()
    assert len(lines) == 2
    docs = [json.loads(ln) for ln in lines]
    assert [d["exit_code"] for d in docs] == [35, 35]
    assert [[v["kind"] for v in d["volumes"]] for d in docs] == [["full", None], ["incremental", None]]
    assert docs[1]["volumes"][1]["error"]["error"] == "source"


# ---------------------------------------------------------------- the job file


def test_job_file_keys_are_read(tmp_path: Path) -> None:
    path = job_file(
        tmp_path,
        {
            "name": "n",
            "media": "sim:/x/lib",
            "changer": "operator",
            "wait": 30,
            "catalog": "cat.sqlite",
            "record_size": "256K",
            "media_set": "00000000-0000-4000-8000-000000000001",
            "full_every": "7d",
            "drives": 1,
        },
        [
            {"name": "a", "source": "/dev/vg/a", "compress": "none", "full_every": 3, "chunk_size": "8M"},
            {"name": "b", "source": "nbd+unix:///b?socket=/run/b.sock", "dirty_bitmap": "bm", "verify_unchanged": True},
            {"name": "c", "source": "c.img", "changed_blocks": "c.xml", "change_block_size": "64K"},
            {"name": "d", "source": "NBD://host/d"},  # (schemes are case-insensitive)
            {"name": "e", "source": "dir/e:1"},  # a file name with a colon: relative to the job file
        ],
        defaults={"compress": "zstd", "verify": True, "block_size": 65536},
    )
    job: JobSpec = read_job(path)
    assert (job.name, job.media, job.changer, job.wait, job.record_size) == (
        "n",
        "sim:/x/lib",
        "operator",
        30.0,
        262144,
    )
    assert job.catalog == str(tmp_path / "cat.sqlite") and job.drives == 1
    assert job.full_every is not None and job.full_every.days == 7
    a, b, c, d, e = job.volumes
    assert d.source == "NBD://host/d" and e.source == str(tmp_path / "dir/e:1")
    assert (a.compress, a.verify, a.block_size, a.chunk_size) == ("none", True, 65536, 8 * 1024 * 1024)
    assert job.full_every_of(a).runs == 3 and job.full_every_of(b).days == 7  # type: ignore[union-attr]
    assert b.source == "nbd+unix:///b?socket=/run/b.sock" and b.dirty_bitmap == "bm" and b.verify_unchanged
    assert c.source == str(tmp_path / "c.img") and c.changed_blocks == str(tmp_path / "c.xml")
    assert c.change_block_size == 65536 and c.compress == "zstd"


GOOD_JOB = '[job]\nname = "n"\nmedia = "sim:t.tap"\n'
GOOD_VOL = '[[volume]]\nname = "a"\nsource = "a.img"\n'

BAD_FILES: list[tuple[str, str, tuple[str, ...]]] = [
    ("missing-job", GOOD_VOL, ("the [job] table is missing",)),
    ("missing-name", '[job]\nmedia = "m"\n' + GOOD_VOL, ("[job]: key 'name': missing",)),
    ("missing-media", '[job]\nname = "n"\n' + GOOD_VOL, ("[job]: key 'media': missing",)),
    ("missing-source", GOOD_JOB + '[[volume]]\nname = "a"\n', ("[[volume]] #1 'a': key 'source': missing",)),
    ("missing-volume-name", GOOD_JOB + '[[volume]]\nsource = "a"\n', ("[[volume]] #1: key 'name': missing",)),
    ("no-volumes", GOOD_JOB, ("no [[volume]] table",)),
    ("unknown-job-key", GOOD_JOB + "pools = 'weekly'\n" + GOOD_VOL, ("[job]: key 'pools': unknown key",)),
    ("unknown-volume-key", GOOD_JOB + GOOD_VOL + "compres = 'zstd'\n", ("[[volume]] #1 'a': key 'compres': unknown",)),
    (
        "unknown-defaults-key",
        GOOD_JOB + "[defaults]\nsource = 'x'\n" + GOOD_VOL,
        ("[defaults]: key 'source': unknown",),
    ),
    ("volume-key-in-job", GOOD_JOB + "compress = 'zstd'\n" + GOOD_VOL, ("[job]: key 'compress': a volume's key",)),
    ("unknown-table", GOOD_JOB + "[retention]\nkeep = 3\n" + GOOD_VOL, ("top level: key 'retention': unknown",)),
    ("volume-not-array", GOOD_JOB + '[volume]\nname = "a"\n', ("key 'volume': must be tables [[volume]]",)),
    ("verify-string", GOOD_JOB + GOOD_VOL + 'verify = "yes"\n', ("#1 'a': key 'verify': must be true or false",)),
    ("block-size-bool", GOOD_JOB + GOOD_VOL + "block_size = true\n", ("key 'block_size': must be a size",)),
    ("block-size-bad", GOOD_JOB + GOOD_VOL + 'block_size = "64Q"\n', ("key 'block_size': not a size",)),
    ("block-size-zero", GOOD_JOB + GOOD_VOL + "block_size = 0\n", ("key 'block_size': 0 must be more than 0",)),
    ("compress-lz4", GOOD_JOB + GOOD_VOL + 'compress = "lz4"\n', ("key 'compress': 'lz4': use",)),
    ("name-int", '[job]\nname = 3\nmedia = "m"\n' + GOOD_VOL, ("[job]: key 'name': must be a string, not an integer",)),
    ("name-empty", GOOD_JOB + '[[volume]]\nname = ""\nsource = "a"\n', ("key 'name': must not be empty",)),
    ("dup-name", GOOD_JOB + GOOD_VOL + GOOD_VOL, ("[[volume]] #2 'a': key 'name': volume #1 has the same name",)),
    ("full-every-7x", GOOD_JOB.replace("[job]\n", '[job]\nfull_every = "7x"\n') + GOOD_VOL, ("key 'full_every'",)),
    ("full-every-0", GOOD_JOB.replace("[job]\n", "[job]\nfull_every = 0\n") + GOOD_VOL, ("key 'full_every': 0",)),
    ("full-every-0d", GOOD_JOB + GOOD_VOL + 'full_every = "0d"\n', ("#1 'a': key 'full_every': '0d'",)),
    ("full-every-float", GOOD_JOB + GOOD_VOL + "full_every = 1.5\n", ("key 'full_every': 1.5 is not",)),
    ("drives-65", GOOD_JOB + "drives = 65\n" + GOOD_VOL, ("[job]: key 'drives': 65: at most 64 drives",)),
    (
        "drives-and-media-set",
        GOOD_JOB + "drives = 2\nmedia_set = '8d3e6f0a-1b2c-4d5e-8f90-a1b2c3d4e5f6'\n" + GOOD_VOL,
        ("[job]: key 'media_set': names one media set, and drives = 2 writes one set per drive",),
    ),
    ("media-empty-list", GOOD_JOB.replace('media = "sim:t.tap"', "media = []") + GOOD_VOL, ("key 'media': must name",)),
    ("drives-0", GOOD_JOB + "drives = 0\n" + GOOD_VOL, ("[job]: key 'drives': 0 must be 1 or more",)),
    ("wait-negative", GOOD_JOB + "wait = -1\n" + GOOD_VOL, ("[job]: key 'wait': must be a number of seconds",)),
    ("media-set", GOOD_JOB + "media_set = 'x'\n" + GOOD_VOL, ("[job]: key 'media_set': 'x' is not a UUID",)),
    (
        "two-trackers",
        GOOD_JOB + GOOD_VOL + 'dirty_bitmap = "b"\nchanged_blocks = "c.xml"\n',
        ("[[volume]] #1 'a': dirty_bitmap and changed_blocks exclude each other",),
    ),
    ("verify-unchanged-alone", GOOD_JOB + GOOD_VOL + "verify_unchanged = true\n", ("#1 'a': verify_unchanged",)),
    (
        "source-legacy-nbd",
        GOOD_JOB + '[[volume]]\nname = "a"\nsource = "nbd:localhost:10809"\n',
        ("#1 'a': key 'source': nbd:localhost:10809 is not an NBD URI libnbd takes",),
    ),
    (
        "source-other-scheme",
        GOOD_JOB + '[[volume]]\nname = "a"\nsource = "HTTP://host/disk"\n',
        ("#1 'a': key 'source': HTTP://host/disk: tapearc reads and writes no HTTP:// URIs",),
    ),
    ("not-toml", GOOD_JOB + "name = \n", ("not a valid TOML file", "line 4")),
    ("duplicate-key", GOOD_JOB + 'name = "m"\n' + GOOD_VOL, ("not a valid TOML file",)),
]


@pytest.mark.parametrize(("text", "words"), [(t, w) for _, t, w in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
def test_job_file_errors_name_file_table_and_key(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "job.toml"
    path.write_text(text)
    with pytest.raises(JobFileError) as e:
        read_job(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    assert e.value.exit_code == 34


def test_unreadable_job_file(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="cannot read the job file: No such file"):
        read_job(str(tmp_path / "none.toml"))
    with pytest.raises(JobFileError, match="not a valid TOML file"):
        (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[job]")
        read_job(str(tmp_path / "bin.toml"))
