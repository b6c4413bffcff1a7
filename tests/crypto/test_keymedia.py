"""The key record on media (tapearc.engine.keymedia): after the label in tape file 0."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tapearc import format as fmt
from tapearc.crypto.keys import Key
from tapearc.crypto.wrap import wrap_key
from tapearc.engine.keymedia import read_key_records, write_key_record
from tapearc.engine.labeling import write_label
from tapearc.engine.tapefiles import probe_label, read_label, walk_tape_files
from tapearc.errors import KeyFileError, MediumInUseError, NotTapearcMediumError
from tapearc.media import open_medium


def labeled(path: Path) -> fmt.Label:
    label = fmt.Label(medium_uuid=uuid.uuid4(), media_set_uuid=uuid.uuid4(), sequence=1, record_size=65536, created=1)
    with open_medium(f"sim:{path}", write=True) as d:
        write_label(d, label)
    return label


def wrapped() -> fmt.WrappedKey:
    return wrap_key(Key.generate(), "pw", log2_n=10)


def test_write_then_read_key_record(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    label = labeled(img)
    w = wrapped()
    with open_medium(f"sim:{img}", write=True) as d:
        assert read_key_records(d) == []
        write_key_record(d, w)
        assert d.position().file == 1
        write_key_record(d, w)  # the same key again: nothing to do
    with open_medium(f"sim:{img}", write=False) as d:
        assert read_key_records(d) == [w]
        # the label is still read as before: tape file 0 is label, key record, filemark
        assert read_label(d) == label and d.position().file == 1
        assert probe_label(d).label == label
        assert [t.kind for t in walk_tape_files(d)] == ["label"]
        d.rewind()
        assert d.read_record()[:8] == fmt.LABEL_MAGIC
        assert d.read_record() == fmt.encode_key_record(w)


def test_another_key_or_a_used_medium_is_refused(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    labeled(img)
    w = wrapped()
    with open_medium(f"sim:{img}", write=True) as d:
        write_key_record(d, w)
        with pytest.raises(MediumInUseError, match=r"key record of key .* already"):
            write_key_record(d, wrapped())
    img2 = tmp_path / "u.tap"
    labeled(img2)
    with open_medium(f"sim:{img2}", write=True) as d:
        d.seek_end_of_data()
        d.write_record(b"a tape file after the label" * 20)
        d.write_filemark()
        with pytest.raises(MediumInUseError, match="tape files after its label"):
            write_key_record(d, w)
        assert read_key_records(d) == []


def test_damaged_key_record_is_named(tmp_path: Path) -> None:
    img = tmp_path / "t.tap"
    labeled(img)
    rec = bytearray(fmt.encode_key_record(wrapped()))
    rec[90] ^= 1
    with open_medium(f"sim:{img}", write=True) as d:
        d.rewind()
        d.read_record()
        d.write_record(bytes(rec))
        d.write_filemark()
        with pytest.raises(KeyFileError, match=r"tape file 0, record 1: the key record does not decode: .*CRC"):
            read_key_records(d)


def test_blank_medium(tmp_path: Path) -> None:
    with open_medium(f"sim:{tmp_path / 'b.tap'}", write=True) as d, pytest.raises(NotTapearcMediumError):
        read_key_records(d)
