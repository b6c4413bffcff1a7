"""The end of a real st tape through the st backend: early warning, then full. DESTRUCTIVE.

Fills the whole tape, so it runs only on small tapes: in the stlab VM (STLAB_TAPE_MB), or when
TAPEARC_TEST_FILL_TAPE=1 says filling the real tape is fine.
"""

from __future__ import annotations

import os
import random

import pytest

from tapearc.errors import MediumFullError, MediumIOError
from tapearc.media import Mark, WriteStatus, open_medium

from .conftest import blank_tape, mt_status

MiB = 1 << 20


@pytest.fixture
def small_tape(tape: str) -> str:
    mb = os.environ.get("STLAB_TAPE_MB")
    if not (mb and int(mb) <= 256) and os.environ.get("TAPEARC_TEST_FILL_TAPE") != "1":
        pytest.skip("fills the tape: only in the stlab VM or with TAPEARC_TEST_FILL_TAPE=1")
    return tape


def test_early_warning_then_full_then_read_back(small_tape):
    dev = small_tape
    spec = dev if ":" in dev else f"st:{dev}"
    blank_tape(dev)
    rng = random.Random(7)
    sizes: list[int] = []
    statuses: list[WriteStatus] = []
    with open_medium(spec, write=True) as d:
        # records of up to the largest the drive takes (1 MiB by default), read back below with a
        # buffer of that size: most are shorter than the buffer by up to 1000 bytes
        rec = d.max_record_size
        while True:
            n = rec - rng.randrange(0, 1000)
            data = random.Random(len(sizes)).randbytes(n)
            pos = d.position()
            try:
                statuses.append(d.write_record(data))
            except MediumFullError:
                assert d.position() == pos  # nothing written
                break
            sizes.append(n)
            assert len(sizes) < 100_000
        first_ew = statuses.index(WriteStatus.EARLY_WARNING)
        assert all(s is WriteStatus.OK for s in statuses[:first_ew])
        assert all(s is WriteStatus.EARLY_WARNING for s in statuses[first_ew:])  # alternation hidden
        assert d.status().early_warning is True
        assert first_ew > 0
        try:  # a filemark after the physical end: st/tgt may or may not take it
            fm = d.write_filemark()
        except (MediumFullError, MediumIOError):
            fm = None
        end = d.position()
    print(
        f"\n{len(sizes)} records ({sum(sizes) // MiB} MiB), early warning at record {first_ew}, "
        f"{len(sizes) - first_ew} written in the zone; filemark after full: {fm}; end {end}"
    )
    with open_medium(spec, write=False) as d:
        for i, n in enumerate(sizes):
            got = d.read_record()
            assert isinstance(got, bytes) and got == random.Random(i).randbytes(n), f"record {i}"
        if fm is not None:
            assert d.read_record() is Mark.FILEMARK
        assert d.read_record() is Mark.END_OF_DATA
    st = mt_status(dev)
    assert st["file"] in (0, 1, -1)
