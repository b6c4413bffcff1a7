"""Block-run mapping helpers."""

from __future__ import annotations

import itertools

import pytest
from fmt_strategies import geometries, runs_in
from hypothesis import given
from hypothesis import strategies as st

from tapearc.format import (
    Run,
    RunKind,
    block_count,
    block_len,
    iter_blocks,
    iter_run_payload,
    runs_data_len,
    runs_from_ids,
)

ids_with_kind = st.lists(st.tuples(st.integers(0, 2**40), st.booleans()), max_size=200)


@given(ids_with_kind)
def test_runs_from_ids_round_trip(ids: list[tuple[int, bool]]) -> None:
    runs = runs_from_ids(ids)
    assert list(iter_blocks(runs)) == ids
    assert all(r.count >= 1 for r in runs)
    # maximal: two neighbouring runs could not be merged
    for a, b in itertools.pairwise(runs):
        assert not (a.kind == b.kind and b.first == a.first + a.count)


@given(st.integers(0, 10**6), st.integers(1, 1000), st.lists(st.booleans(), max_size=300))
def test_runs_from_consecutive_ids(start: int, _: int, kinds: list[bool]) -> None:
    ids = [(start + i, z) for i, z in enumerate(kinds)]
    runs = runs_from_ids(ids)
    changes = sum(1 for a, b in itertools.pairwise(kinds) if a != b)
    assert len(runs) == (changes + 1 if kinds else 0)
    assert list(iter_blocks(runs)) == ids


def test_runs_from_ids_example() -> None:
    ids = [(0, False), (1, False), (2, True), (3, True), (5, False), (4, False), (6, False)]
    assert runs_from_ids(ids) == (
        Run(0, 2, RunKind.DATA),
        Run(2, 2, RunKind.ZERO),
        Run(5, 1, RunKind.DATA),
        Run(4, 1, RunKind.DATA),
        Run(6, 1, RunKind.DATA),
    )


def test_block_len() -> None:
    assert block_count(41960, 4096) == 11
    assert block_count(0, 4096) == 0
    assert block_len(0, 4096, 41960) == 4096
    assert block_len(9, 4096, 41960) == 4096
    assert block_len(10, 4096, 41960) == 1000
    assert block_len(3, 4096, 16384) == 4096
    for bad in (11, -1):
        with pytest.raises(ValueError):
            block_len(bad, 4096, 41960)
    with pytest.raises(ValueError):
        block_len(4, 4096, 16384)


@given(geometries(max_blocks=50, max_block_size=64), st.data())
def test_runs_data_len_matches_blocks(geo: tuple[int, int], d: st.DataObject) -> None:
    bs, vs = geo
    runs = d.draw(runs_in(bs, vs))
    expected = sum(block_len(i, bs, vs) for i, zero in iter_blocks(runs) if not zero)
    assert runs_data_len(runs, bs, vs) == expected
    raw = bytes(i % 251 for i in range(expected))
    pos = 0
    for run, view in iter_run_payload(runs, raw, bs, vs):
        if run.kind == RunKind.ZERO:
            assert view is None
        else:
            assert view is not None
            assert bytes(view) == raw[pos : pos + len(view)]
            pos += len(view)
    assert pos == expected
    with pytest.raises(ValueError):
        list(iter_run_payload(runs, raw + b"x", bs, vs))
