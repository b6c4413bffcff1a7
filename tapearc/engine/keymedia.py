"""The key record on media: tape file 0 of every medium of an encrypted media set is the volume
label record, then the set's key record (:mod:`tapearc.format.keyrecord`), then the filemark
(SPEC section 16). ``tapearc key recover`` reads it back with no catalog and no key file.
"""

from __future__ import annotations

from tapearc import format as fmt
from tapearc.crypto.keys import fingerprint_text
from tapearc.engine.tapefiles import read_label
from tapearc.errors import KeyFileError, MediumInUseError, TapearcError
from tapearc.media.base import Mark, TapeDrive

__all__ = ["read_key_records", "write_key_record"]

MAX_KEY_RECORDS = 16  # records read after the label before giving up on tape file 0


def read_key_records(drive: TapeDrive) -> list[fmt.WrappedKey]:
    """The key records of the medium in ``drive`` (an empty list for a medium of a plain set).

    Rewinds, reads the label (its errors propagate: a blank, foreign or damaged medium), then
    every record of tape file 0 after it; one that does not decode is a KeyFileError naming the
    medium, tape file 0 and its record number (and the format's error). Leaves the drive at the start of tape file 1
    (or at the end of data)."""
    read_label(drive)  # the medium is a tapearc medium, tape file 0 is whole
    drive.rewind()
    drive.read_record()
    out: list[fmt.WrappedKey] = []
    for record in range(1, MAX_KEY_RECORDS + 1):
        rec = drive.read_record()
        if isinstance(rec, Mark):
            return out
        try:
            out.append(fmt.decode_key_record(rec))
        except TapearcError as e:
            raise KeyFileError(f"the key record does not decode: {e.message}").at(
                medium=drive.name, tape_file=0, record=record
            ) from None
    raise KeyFileError(f"tape file 0 holds more than {MAX_KEY_RECORDS} key records").at(medium=drive.name)


def write_key_record(drive: TapeDrive, wrapped: fmt.WrappedKey) -> None:
    """Put ``wrapped`` right after the label of the medium in ``drive``, before tape file 0's
    filemark: tape file 0 is rewritten as label, key record, filemark.

    Only on a medium that holds nothing after its label (one just labeled): a medium with tape
    files after tape file 0, or with a key record already (of another key: MediumInUseError; of
    the same key: nothing to do), is left untouched. Leaves the drive at the start of tape file 1.
    """
    existing = read_key_records(drive)
    if any(w.key_fingerprint == wrapped.key_fingerprint for w in existing):
        return
    if existing:
        raise MediumInUseError(
            f"medium holds the key record of key {fingerprint_text(existing[0].key_fingerprint)} already, "
            f"not of key {fingerprint_text(wrapped.key_fingerprint)}; nothing was written",
            hint="a media set has one key: a new key needs a new media set",
        ).at(medium=drive.name)
    if drive.read_record() is not Mark.END_OF_DATA:
        raise MediumInUseError(
            "medium holds tape files after its label; a key record is written only on a medium "
            "just labeled; nothing was written"
        ).at(medium=drive.name)
    record = fmt.encode_key_record(wrapped)
    drive.rewind()
    drive.read_record()  # the label: the key record goes right after it
    drive.write_record(record)
    drive.write_filemark()


def key_record_fingerprint(records: list[bytes]) -> tuple[str | None, str | None]:
    """The fingerprint (text) of the first of tape file 0's key records (as read after the
    label) that decodes, and what is wrong with the first that does not."""
    fp: str | None = None
    problem: str | None = None
    for k, rec in enumerate(records, start=1):
        try:
            w = fmt.decode_key_record(rec)
        except TapearcError as e:
            problem = problem or f"tape file 0, record {k}: the key record is damaged: {e.message}"
            continue
        fp = fp or fingerprint_text(w.key_fingerprint)
    return fp, problem
