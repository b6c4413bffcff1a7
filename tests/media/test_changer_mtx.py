"""The mtx changer: the `mtx status` parser on captured and synthetic output, and the
command handling of MtxChanger against fake `mtx` programs (tests/media/data/mtx/)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from tapearc.media.changer import Changer, ChangerError, DriveBayStatus, SlotStatus
from tapearc.media.changers.mtx import MtxChanger, mtx_error_line, parse_mtx_status

DATA = Path(__file__).parent / "data" / "mtx"
LAB = sorted(DATA.glob("lab-tgt-*.transcript"))
SYNTHETIC = sorted(DATA.glob("synthetic-*.status"))

_STEP = re.compile(r"^=== CMD mtx ([^\n]*)\n--- stdout\n(.*?)--- stderr\n(.*?)--- rc=(\d+)\n", re.M | re.S)


def read_transcript(path: Path) -> list[dict]:
    """The mtx runs recorded by cap.sh: [{"argv", "stdout", "stderr", "rc"}]."""
    text = path.read_text()
    return [
        {"argv": m.group(1).split(), "stdout": m.group(2), "stderr": m.group(3), "rc": int(m.group(4))}
        for m in _STEP.finditer(text)
    ]


def install(tmp_path: Path, script: str, config: dict, name: str = "mtx") -> str:
    """Copy a fake mtx from data/mtx into tmp_path as an executable; its config next to it."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + (DATA / script).read_text())
    path.chmod(0o755)
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    return str(path)


class Replay:
    def __init__(self, tmp_path: Path, steps: list[dict]) -> None:
        self.log = tmp_path / "argv.log"
        self.path = install(
            tmp_path, "fake_mtx_replay.py", {"steps": steps, "log": str(self.log), "counter": str(tmp_path / "n")}
        )

    @property
    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(ln) for ln in self.log.read_text().splitlines()]


def step(argv: list[str] | None, stdout: str = "", stderr: str = "", rc: int = 0, sleep: float = 0) -> dict:
    return {"argv": argv, "stdout": stdout, "stderr": stderr, "rc": rc, "sleep": sleep}


def lab(name: str) -> list[dict]:
    return read_transcript(DATA / name)


# ------------------------------------------------------------------------- the transcripts


def test_the_captures_are_there():
    assert len(LAB) >= 3 and len(SYNTHETIC) >= 3
    for path in LAB:
        steps = read_transcript(path)
        assert steps, path
        assert any(s["argv"][-1] == "status" and s["rc"] == 0 for s in steps), path


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.stem)
def test_every_captured_status_parses_consistently(path: Path):
    for s in read_transcript(path):
        if s["argv"][-1] != "status" or s["rc"] != 0:
            continue
        st = parse_mtx_status(s["stdout"])
        header = re.search(r"(\d+) Drives, (\d+) Slots", s["stdout"])
        assert len(st.drives) == int(header.group(1))
        assert len(st.slots) == int(header.group(2))
        assert [d.number for d in st.drives] == list(range(len(st.drives)))
        assert [k.number for k in st.slots] == list(range(1, len(st.slots) + 1))
        assert st.details["device"] == s["argv"][1]
        nobarcode = "nobarcode" in s["argv"]
        for slot in st.slots:
            assert not slot.import_export
            if slot.full and not nobarcode:
                assert re.fullmatch(r"STL\d{3}L8", slot.barcode)
            else:
                assert slot.barcode is None
        for d in st.drives:
            if d.full:
                assert d.source_slot is not None
                assert (d.barcode is None) == nobarcode
            else:
                assert d.barcode is None and d.source_slot is None
        # a tape is in one place only; 4 and 6 slots start full, so every barcode is there
        seen = [x.barcode for x in (*st.slots, *st.drives) if x.barcode]
        assert len(seen) == len(set(seen))


def test_lab_status_before_and_after_a_load():
    steps = lab("lab-tgt-1drive-4slots.transcript")
    first = parse_mtx_status(steps[0]["stdout"])
    assert first.drives == (DriveBayStatus(0, False),)
    assert first.slots == tuple(SlotStatus(k, True, f"STL00{k}L8") for k in range(1, 5))
    assert first.details["import_export"] == 0
    assert steps[1]["argv"][-3:] == ["load", "1", "0"]
    after = parse_mtx_status(steps[2]["stdout"])
    # "Data Transfer Element 0:Full (Storage Element 1 Loaded):VolumeTag = STL001L8   ..."
    assert after.drives == (DriveBayStatus(0, True, "STL001L8", 1),)
    # "Storage Element 1:Empty:VolumeTag=       ..."
    assert after.slots[0] == SlotStatus(1, False, None)
    assert after.slot_of("STL001L8") is None and after.slot_of("STL002L8") == 2
    back = parse_mtx_status(steps[4]["stdout"])
    assert back == first


def test_lab_nobarcode_status():
    steps = lab("lab-tgt-1drive-4slots.transcript")
    s = next(s for s in steps if "nobarcode" in s["argv"])
    st = parse_mtx_status(s["stdout"])
    assert st.drives == (DriveBayStatus(0, True, None, 2),)
    assert [(k.number, k.full, k.barcode) for k in st.slots] == [
        (1, True, None),
        (2, False, None),
        (3, True, None),
        (4, True, None),
    ]


def test_lab_two_drives():
    steps = lab("lab-tgt-2drives-6slots.transcript")
    st = parse_mtx_status(steps[3]["stdout"])
    assert st.drives == (DriveBayStatus(0, True, "STL001L8", 1), DriveBayStatus(1, True, "STL003L8", 3))
    assert [k.full for k in st.slots] == [False, True, False, True, True, True]
    last = parse_mtx_status(steps[-1]["stdout"])
    assert last.drives == (DriveBayStatus(0, False), DriveBayStatus(1, True, "STL003L8", 3))


def test_synthetic_import_export_and_missing_labels():
    st = parse_mtx_status((DATA / "synthetic-1drive-24slots-ie-nolabels.status").read_text())
    assert len(st.slots) == 24 and st.details["import_export"] == 1
    assert st.slots[23] == SlotStatus(24, False, None, import_export=True)
    assert st.slots[6] == SlotStatus(7, True, None)  # "Storage Element 7:Full " : no label
    assert st.slots[2] == SlotStatus(3, False, None)
    assert st.slots[0] == SlotStatus(1, True, "000001L6")
    assert st.drives == (DriveBayStatus(0, True, "000003L6", 3),)
    assert not any(s.import_export for s in st.slots[:23])


def test_synthetic_four_drives_alternate_tags():
    st = parse_mtx_status((DATA / "synthetic-4drives-26slots-ie-alternate.status").read_text())
    assert st.details["device"] == "/dev/sg7"
    assert st.details["import_export"] == 2
    assert st.drives == (
        DriveBayStatus(0, True, "ABC012L7", 12),
        DriveBayStatus(1, False),
        DriveBayStatus(2, True, "CLN001L1", None),  # Full (Unknown Storage Element Loaded)
        DriveBayStatus(3, True, "ABC005L7", 5),  # ":VolumeTag = ABC005L7:AlternateVolumeTag = ALT005"
    )
    assert st.slots[0] == SlotStatus(1, True, "ABC001L7")
    assert st.slots[1] == SlotStatus(2, True, None)  # only an alternate tag
    assert st.slots[4] == SlotStatus(5, False, None)
    assert st.slots[24] == SlotStatus(25, True, "ABC099L7", import_export=True)
    assert st.slots[25] == SlotStatus(26, False, None, import_export=True)
    assert st.details["alternate_barcodes"] == {"drive 3": "ALT005", "slot 1": "ALT001", "slot 2": "ALT002"}
    assert st.slot_of("ABC099L7") == 25


def test_synthetic_old_header_without_barcodes():
    st = parse_mtx_status((DATA / "synthetic-old-header-nobarcode.status").read_text())
    assert st.details["device"] == "/dev/changer" and st.details["import_export"] == 0
    assert st.drives == (DriveBayStatus(0, True, None, 1), DriveBayStatus(1, False))
    assert [s.full for s in st.slots] == [False, True, True, True, False, True, True, True]
    assert st.slots[7].import_export and all(s.barcode is None for s in st.slots)


def test_synthetic_tags_on_lines_of_their_own():
    st = parse_mtx_status((DATA / "synthetic-split-tag-lines.status").read_text())
    assert st.drives == (DriveBayStatus(0, True, "VOL002", 2),)
    assert st.slots == (SlotStatus(1, True, "VOL001"), SlotStatus(2, False), SlotStatus(3, True, None))
    assert st.details["alternate_barcodes"] == {"slot 3": "ALT003"}


@pytest.mark.parametrize(
    "text",
    [
        "  Storage Changer /dev/sg3:1 Drives, 4 Slots ( 0 Import/Export )\r\n"
        "Data Transfer Element 0:Full (Storage Element 1 Loaded):VolumeTag=X1\r\n"
        "      Storage Element 1:Empty\r\n",
        "Data Transfer Element 0 : Full (Storage Element 1 Loaded) :VolumeTag =  X1  \nStorage Element 1 : Empty\n",
    ],
)
def test_spacing_and_line_ends_vary(text):
    st = parse_mtx_status(text)
    assert st.drives == (DriveBayStatus(0, True, "X1", 1),)
    assert st.slots == (SlotStatus(1, False),)


@pytest.mark.parametrize("text", ["", "\n\n", "mtx: cannot open SCSI device\n", "Product Type: Medium Changer\n"])
def test_unparseable_status_is_a_changer_error(text):
    with pytest.raises(ChangerError, match="cannot understand the output of mtx status"):
        parse_mtx_status(text)


def test_error_lines_from_the_lab():
    steps = lab("lab-tgt-2drives-3slots-errors.transcript")
    sense = next(s for s in steps if s["argv"][-2:] == ["0", "0"])
    assert mtx_error_line(sense["stderr"]) == (
        "MOVE MEDIUM from Element Address 500 to 0 Failed (sense key Illegal Request, ASC 24h ASCQ 00h)"
    )
    empty = next(s for s in steps if s["argv"][-3:] == ["load", "1", "1"])
    assert mtx_error_line(empty["stderr"]) == "Source Element Address 1000 is Empty"
    usage = "Usage:\n\tmtx --version\n\tmtx [ -f <loader-dev> ] noattach <more commands>\n"
    assert "usage" in mtx_error_line(usage)


# ------------------------------------------------------------------------- MtxChanger


def test_replays_the_lab_session(tmp_path):
    steps = lab("lab-tgt-1drive-4slots.transcript")
    wanted = [
        s for s in steps if s["argv"][2:] in (["status"], ["load", "1", "0"], ["unload", "1", "0"], ["load", "9", "0"])
    ][:6]
    assert [s["argv"][2:] for s in wanted] == [
        ["status"],
        ["load", "1", "0"],
        ["status"],
        ["unload", "1", "0"],
        ["status"],
        ["load", "9", "0"],
    ]
    fake = Replay(tmp_path, [step(s["argv"], s["stdout"], s["stderr"], s["rc"]) for s in wanted])
    ch = MtxChanger("/dev/sg2", mtx=fake.path)
    assert isinstance(ch, Changer)
    assert ch.name == "mtx:/dev/sg2"
    assert ch.status().drives[0].full is False
    ch.load(1, 0)
    assert ch.status().drives[0] == DriveBayStatus(0, True, "STL001L8", 1)
    ch.unload(0, 1)
    assert ch.status().slot_of("STL001L8") == 1
    with pytest.raises(ChangerError) as info:
        ch.load(9, 0)
    msg = str(info.value)
    assert msg == (
        "mtx:/dev/sg2: `mtx -f /dev/sg2 load 9 0` failed: "
        "Invalid <storage-element-number> argument '9' to 'load' command"
    )
    assert "\n" not in msg and info.value.exit_code == 17
    assert fake.calls == [s["argv"] for s in wanted]
    ch.close()
    ch.close()
    with pytest.raises(ChangerError, match="closed"):
        ch.status()


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["unload", "1", "0"], "Data Transfer Element 0 is Empty"),
        (["load", "3", "0"], "Drive 0 Full (Storage Element 2 loaded)"),
        (["unload", "3", "0"], "Storage Element 3 is Already Full"),
        (["load", "1", "1"], "illegal <drive-number> argument '1' to 'load' command"),
    ],
)
def test_lab_failures_become_changer_errors(tmp_path, argv, expect):
    s = next(s for s in lab("lab-tgt-1drive-4slots.transcript") if s["argv"][2:] == argv and s["rc"])
    fake = Replay(tmp_path, [step(s["argv"], s["stdout"], s["stderr"], s["rc"])])
    ch = MtxChanger("/dev/sg2", mtx=fake.path)
    with pytest.raises(ChangerError) as info:
        if argv[0] == "load":
            ch.load(int(argv[1]), int(argv[2]))
        else:
            ch.unload(int(argv[2]), int(argv[1]))
    assert str(info.value).endswith(f"failed: {expect}")
    assert info.value.details["mtx_status"] == 1


def test_scsi_failure_is_one_line(tmp_path):
    s = next(s for s in lab("lab-tgt-2drives-3slots-errors.transcript") if s["argv"][2:] == ["unload", "0", "0"])
    fake = Replay(tmp_path, [step(s["argv"], s["stdout"], s["stderr"], s["rc"])])
    with pytest.raises(ChangerError) as info:
        MtxChanger("/dev/sg3", mtx=fake.path).unload(0, 0)
    assert "\n" not in str(info.value)
    assert "MOVE MEDIUM from Element Address 500 to 0 Failed (sense key Illegal Request" in str(info.value)


def test_unload_to_where_it_came_from(tmp_path):
    status = lab("lab-tgt-2drives-6slots.transcript")[3]  # drive 0 from 1, drive 1 from 3
    fake = Replay(
        tmp_path,
        [
            step(["-f", "/dev/sg3", "status"], status["stdout"]),
            step(["-f", "/dev/sg3", "unload", "3", "1"], "Unloading drive 1 into Storage Element 3...done\n"),
        ],
    )
    MtxChanger("/dev/sg3", mtx=fake.path).unload(1)
    assert fake.calls[-1] == ["-f", "/dev/sg3", "unload", "3", "1"]


def test_unload_to_the_first_empty_slot_when_the_source_is_unknown(tmp_path):
    text = (DATA / "synthetic-4drives-26slots-ie-alternate.status").read_text()
    fake = Replay(
        tmp_path, [step(["-f", "/dev/sg7", "status"], text), step(["-f", "/dev/sg7", "unload", "5", "2"], "")]
    )
    MtxChanger("/dev/sg7", mtx=fake.path).unload(2)  # unknown source: slot 5 (not I/E 26)
    assert len(fake.calls) == 2


def test_unload_an_empty_drive_or_no_such_drive(tmp_path):
    status = lab("lab-tgt-1drive-4slots.transcript")[0]["stdout"]
    fake = Replay(tmp_path, [step(None, status), step(None, status)])
    ch = MtxChanger("/dev/sg2", mtx=fake.path)
    with pytest.raises(ChangerError, match="drive 0 is empty"):
        ch.unload(0)
    with pytest.raises(ChangerError, match="no drive 3"):
        ch.unload(3)
    assert fake.calls == [["-f", "/dev/sg2", "status"]] * 2


def test_status_output_that_is_not_a_status(tmp_path):
    fake = Replay(tmp_path, [step(None, "something else entirely\n")])
    with pytest.raises(ChangerError, match=r"^mtx:/dev/sg2: cannot understand the output of mtx status"):
        MtxChanger("/dev/sg2", mtx=fake.path).status()


def test_failure_with_words_on_stdout_only(tmp_path):
    fake = Replay(tmp_path, [step(None, "Loading media...\nhardware on fire\n", "", 3)])
    with pytest.raises(ChangerError, match=r"failed: hardware on fire$"):
        MtxChanger("/dev/sg2", mtx=fake.path).load(1)


def test_failure_without_words(tmp_path):
    fake = Replay(tmp_path, [step(None, "", "", 2)])
    with pytest.raises(ChangerError, match=r"failed: exit status 2$"):
        MtxChanger("/dev/sg2", mtx=fake.path).load(1)


def test_motion_timeout(tmp_path):
    fake = Replay(tmp_path, [step(None, "Loading...", "", 0, sleep=30)])
    ch = MtxChanger("/dev/sg2", mtx=fake.path, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(ChangerError) as info:
        ch.load(1, 0)
    assert time.monotonic() - t0 < 10
    assert str(info.value) == "mtx:/dev/sg2: `mtx -f /dev/sg2 load 1 0` timed out after 0.5 s"
    assert "status" in info.value.hint


def test_status_timeout(tmp_path):
    fake = Replay(tmp_path, [step(None, "", "", 0, sleep=30)])
    ch = MtxChanger("/dev/sg2", mtx=fake.path, status_timeout=0.5)
    with pytest.raises(ChangerError, match=r"status` timed out after 0.5 s"):
        ch.status()


def test_default_timeouts():
    ch = MtxChanger("/dev/sg9")
    assert (ch.timeout, ch.status_timeout) == (900, 120)


def test_timeout_kills_a_whole_process_group(tmp_path):
    # a wrapper shell script whose child keeps the pipes open: the timeout must still return
    wrapper = tmp_path / "mtx-wrapper"
    wrapper.write_text("#!/bin/sh\nsleep 30\n")
    wrapper.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(ChangerError, match="timed out"):
        MtxChanger("/dev/sg2", mtx=str(wrapper), timeout=0.3).load(1)
    assert time.monotonic() - t0 < 10


def test_mtx_missing(tmp_path):
    with pytest.raises(ChangerError, match=r"cannot run .*not found") as info:
        MtxChanger("/dev/sg2", mtx=str(tmp_path / "no-such-mtx")).status()
    assert "apt install mtx" in info.value.hint


def test_no_device():
    with pytest.raises(ChangerError, match="no device"):
        MtxChanger("")


# ------------------------------------------------------------------------- the stateful fake


def stateful(
    tmp_path: Path,
    device: str = "/dev/sg5",
    nslots: int = 4,
    ndrives: int = 1,
    empty: tuple[int, ...] = (),
    ie: tuple[int, ...] = (),
) -> MtxChanger:
    state = {
        "device": device,
        "slots": {str(k): (None if k in empty else f"STL{k:03d}L8") for k in range(1, nslots + 1)},
        "ie": list(ie),
        "drives": {str(i): None for i in range(ndrives)},
        "log": str(tmp_path / "argv.log"),
    }
    return MtxChanger(device, mtx=install(tmp_path, "fake_mtx_stateful.py", state))


def test_stateful_fake_round_trip(tmp_path):
    ch = stateful(tmp_path, ndrives=2, empty=(4,), ie=(4,))
    st = ch.status()
    assert st.slots[3] == SlotStatus(4, False, None, import_export=True)
    ch.load(2, 1)
    assert ch.status().drives[1] == DriveBayStatus(1, True, "STL002L8", 2)
    with pytest.raises(ChangerError, match="Source Element Address 1001 is Empty"):
        ch.load(2, 0)
    ch.unload(1, 4)
    assert ch.status().slots[3] == SlotStatus(4, True, "STL002L8", import_export=True)
