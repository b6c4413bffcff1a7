"""Property test: random sequences of records and filemarks read back exactly."""

from __future__ import annotations

import errno
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapesim import mtio
from tapesim.drive import SimDrive, create_image
from tapesim.simh import ObjKind, scan

record = st.binary(min_size=1, max_size=300)
op = st.one_of(record, st.just(None))  # None = filemark
ops_lists = st.lists(op, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_lists, close_between=st.booleans())
def test_random_records_and_filemarks_read_back(ops, close_between):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "h.tap")
        create_image(path, capacity=1 << 20, early_warning=0)
        expected: list[bytes | None] = []
        with SimDrive(path) as d:
            for o in ops:
                if o is None:
                    d.mtop(mtio.MTWEOFI, 1)
                else:
                    assert d.write(o) == len(o)
                expected.append(o)
                assert d.mtpos() == len(expected)
            if close_between:
                d.close()
                d = SimDrive(path)
            else:
                d.mtop(mtio.MTREW)
            # st writes one filemark (at close or before the rewind) if the last op was a write
            if ops and ops[-1] is not None:
                expected.append(None)
            assert d.object_count == len(expected)
            got: list[bytes | None] = []
            zero_reads = 0
            fileno = 0
            for i, e in enumerate(expected):
                assert d.mtpos() == i
                st_ = d.mtget()
                assert st_.mt_fileno == fileno
                r = d.read(d.max_record)
                if e is None:
                    assert r == b""
                    fileno += 1
                got.append(r if e is not None else None)
            assert got == expected
            # end of data
            if expected and expected[-1] is None:
                assert d.read(1000) == b""
                zero_reads += 1
            with pytest.raises(OSError) as ei:
                d.read(1000)
            assert ei.value.errno == errno.EIO
            assert d.mtpos() == len(expected)
            # random access by LOCATE agrees with the sequential read
            for i in range(len(expected) - 1, -1, -1):
                d.mtop(mtio.MTSEEK, i)
                r = d.read(d.max_record)
                assert r == (expected[i] if expected[i] is not None else b"")
            d.close()
        res = scan(path)
        assert not res.truncated
        assert [None if o.kind is ObjKind.FILEMARK else o.length for o in res.objects] == [
            None if e is None else len(e) for e in expected
        ]
        assert res.end_offset == os.path.getsize(path)


@settings(max_examples=40, deadline=None)
@given(
    first=st.lists(op, min_size=1, max_size=15),
    cut=st.integers(min_value=0, max_value=15),
    second=st.lists(op, max_size=10),
)
def test_overwrite_at_any_position(first, cut, second):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "o.tap")
        create_image(path, capacity=1 << 20, early_warning=0)
        with SimDrive(path, implicit_filemarks=False) as d:
            for o in first:
                d.write(o) if o is not None else d.mtop(mtio.MTWEOF)
            cut = min(cut, len(first))
            d.mtop(mtio.MTSEEK, cut)
            for o in second:
                d.write(o) if o is not None else d.mtop(mtio.MTWEOFI)
            expected = first[:cut] + second if second else first  # moving erases nothing
            assert d.object_count == len(expected)
            assert d.used == os.path.getsize(path)
        with SimDrive(path, readonly=True) as d:
            for e in expected:
                assert d.read(d.max_record) == (e if e is not None else b"")
