"""A job of three volumes on a real st device (``tapearc run``): each generation ends with an
immediate filemark (MTWEOFI) and the drive is synced once at the end of the run (MTWEOF 0); the
tape then holds the label and three tape files, the catalog says complete, a scan from the
tape alone agrees, and each volume restores byte for byte. DESTRUCTIVE (the tape is blanked).
Needs TAPEARC_TEST_TAPE=/dev/nstN."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from .conftest import blank_tape, mt_status, tapearc

MiB = 1 << 20


def test_a_job_on_st_syncs_once_and_restores(tmp_path: Path) -> None:
    dev = os.environ["TAPEARC_TEST_TAPE"]
    blank_tape(dev)
    catalog = tmp_path / "catalog.sqlite"
    datas = {}
    for i, name in enumerate("abc", 1):
        data = random.Random(i).randbytes(i * MiB // 2 + 4097) + bytes(MiB // 4)
        (tmp_path / f"{name}.img").write_bytes(data)
        datas[name] = data
    vols = "".join(f'[[volume]]\nname = "{n}"\nsource = "{tmp_path / n}.img"\n' for n in datas)
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "night"\nmedia = "{dev}"\n[defaults]\nblock_size = "64K"\n{vols}')
    run = json.loads(tapearc("run", str(job), "--json", catalog=catalog).stdout)
    assert run["ok"] and [v["outcome"] for v in run["volumes"]] == ["ok", "ok", "ok"]
    st = mt_status(dev)
    assert st["file"] == 4 and st["block"] == 0  # label + 3 generation tape files, after the last filemark
    listed = json.loads(tapearc("catalog", "generations", "--json", catalog=catalog).stdout)["generations"]
    assert sorted((g["volume"], g["state"]) for g in listed) == [(n, "complete") for n in "abc"]
    catalog.unlink()  # the tape alone: a scan finds the same three complete generations
    scan = json.loads(tapearc("scan", "--media", dev, "--json", catalog=catalog).stdout)
    assert sorted((g["volume"], g["state"]) for g in scan["generations"]) == [(n, "complete") for n in "abc"]
    for name, data in datas.items():
        out = tmp_path / f"out-{name}.img"
        tapearc("restore", "--media", dev, "--volume", name, "--to", str(out), catalog=catalog)
        assert out.read_bytes() == data
