"""Retention (tapearc/engine/retention.py) over random histories: no medium holding a part of a
kept generation, or of a base a kept generation needs, is ever recyclable; and every medium
whose generations are all expired is."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tapearc.engine.retention import (
    DAY,
    KEEP_DAYS,
    KEEP_FOREVER,
    KEEP_FULL,
    Gen,
    Policy,
    generation_ranges,
    kept_generations,
    media_verdicts,
)

STATES = ("complete", "complete", "complete", "incomplete", "damaged", "complete-pending", "writing")


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Gen], list[int]]:
    """Generations of 1-3 volumes written one after another onto media 0.., each spanning onto
    the next medium now and then; incrementals on a random earlier generation of their chain."""
    n = draw(st.integers(1, 30))
    gens: list[Gen] = []
    medium, t = 0, 0
    chains: dict[str, tuple[int, list[int]]] = {}  # volume -> (chain id, numbers written)
    for key in range(n):
        volume = draw(st.sampled_from(["a", "b", "c"]))
        if volume not in chains or draw(st.integers(0, 6)) == 0:  # a new media set's chain
            chains[volume] = (1000 + key, [])
        chain, numbers = chains[volume]
        number = len(numbers) + 1
        base = draw(st.sampled_from([0, *numbers])) if numbers else 0
        t += draw(st.integers(0, 3 * DAY))
        on = {medium}
        for _ in range(draw(st.integers(0, 2))):  # spans onto the next medium
            medium += 1
            on.add(medium)
        if draw(st.booleans()):
            medium += 1
        state = draw(st.sampled_from(STATES))
        gens.append(Gen(key, volume, chain, number, base, state, t, frozenset(on)))
        numbers.append(number)
    gone = draw(st.sets(st.sampled_from(range(n)), max_size=3))  # recycled with a medium: their rows are gone
    return [g for g in gens if g.key not in gone], list(range(medium + 2))


policies = st.one_of(
    st.builds(Policy, st.just(KEEP_FULL), st.integers(1, 3)),
    st.builds(Policy, st.just(KEEP_DAYS), st.integers(1, 20)),
    st.just(Policy(KEEP_FOREVER)),
)


def usable_of(gens: list[Gen]) -> list[Gen]:
    by = {(g.chain, g.number): g for g in gens}

    def ok(g: Gen) -> bool:
        return not g.base or ((g.chain, g.base) in by and ok(by[(g.chain, g.base)]))

    return [g for g in gens if ok(g)]


def reference_kept(gens: list[Gen], policy: Policy, now: int) -> set[int]:
    """The rules, written out plainly: kept for its own sake, then every base chain."""

    def restorable(g: Gen) -> bool:
        if not g.base:
            return True
        base = [h for h in gens if h.chain == g.chain and h.number == g.base]
        return bool(base) and restorable(base[0])

    if policy.retention == KEEP_FOREVER:  # every generation, restorable or not
        return {g.key for g in gens}
    own: set[int] = set()
    usable = [g for g in gens if restorable(g) or g.state == "writing"]
    for g in usable:
        history = sorted((h for h in usable if h.volume == g.volume), key=lambda h: (h.created, h.chain, h.number))
        done = [h for h in history if h.state in ("complete", "complete-pending")]
        good = [h for h in done if h.state == "complete"]  # a complete-pending full does not count
        fulls = [h for h in good if h.base == 0]
        skewed = any(h.created > now for h in history)  # dated after now: every one is kept
        newest = (done and done[-1] is g) or (good and good[-1] is g)
        always = policy.retention == KEEP_FOREVER or g.state == "writing" or newest or skewed
        young = policy.retention == KEEP_DAYS and g.created > now - policy.keep * DAY
        recent = policy.retention == KEEP_FULL and (
            len(fulls) <= policy.keep or history.index(g) >= history.index(fulls[-policy.keep])
        )
        if always or young or recent:
            own.add(g.key)
    kept = set()
    for k in own:
        g: Gen | None = next(h for h in gens if h.key == k)
        while g is not None:
            kept.add(g.key)
            g = next((h for h in gens if h.chain == g.chain and h.number == g.base), None) if g.base else None
    return kept


@settings(max_examples=300, deadline=None)
@given(histories(), policies, st.integers(0, 120 * DAY))
def test_no_needed_medium_is_ever_recyclable(history: tuple[list[Gen], list[int]], policy: Policy, now: int) -> None:
    gens, media = history
    kept = reference_kept(gens, policy, now)
    assert set(kept_generations(gens, policy, now)) == kept
    verdicts = media_verdicts(media, gens, policy, now)
    for m in media:
        on = [g for g in gens if m in g.media]
        needed = [g for g in on if g.key in kept]
        assert verdicts[m].recyclable == (not needed), (m, on, needed, verdicts[m])
        if needed:
            assert verdicts[m].why.startswith("needed by volume ")
    for g in gens:  # every part of a kept generation, and of each base it needs, stays
        if g.key in kept:
            assert not any(verdicts[m].recyclable for m in g.media)
    newest = {}
    for g in sorted(gens, key=lambda g: (g.created, g.chain, g.number)):
        if g.state in ("complete", "complete-pending") and g.key in {h.key for h in usable_of(gens)}:
            newest[g.volume] = g
    assert all(g.key in kept for g in newest.values())


def test_keep_full_2_keeps_two_cycles_and_the_bases_they_need() -> None:
    def gen(key: int, number: int, base: int, day: int, medium: int, state: str = "complete") -> Gen:
        return Gen(key, "x", 1, number, base, state, day * DAY, frozenset({medium}))

    gens = [
        gen(1, 1, 0, 0, 0),  # full
        gen(2, 2, 1, 1, 0),
        gen(3, 3, 0, 2, 1),  # full
        gen(4, 4, 3, 3, 1, "incomplete"),
        gen(5, 5, 1, 4, 2),  # an incremental on the first full: its base stays
        gen(6, 6, 0, 5, 3),  # full
    ]
    policy = Policy(KEEP_FULL, 2)
    kept = kept_generations(gens, policy, 10 * DAY)
    assert sorted(kept) == [1, 3, 4, 5, 6]  # 2 expired; 1 is 5's base
    assert kept[1].number == 5
    v = media_verdicts([0, 1, 2, 3, 4], gens, policy, 10 * DAY)
    assert [v[m].recyclable for m in range(5)] == [False, False, False, False, True]
    assert v[0].why.startswith("needed by volume x generation 5 of ")  # its local date
    gens[4] = replace(gens[4], base=3)
    v = media_verdicts([0, 1, 2, 3], gens, policy, 10 * DAY)
    assert [v[m].recyclable for m in range(4)] == [True, False, False, False]
    assert v[0].why == "expired"


def test_keep_days_gives_the_date_a_medium_expires() -> None:
    gens = [
        Gen(1, "x", 1, 1, 0, "complete", 0, frozenset({0})),
        Gen(2, "x", 1, 2, 1, "complete", 2 * DAY, frozenset({1})),
        Gen(3, "x", 2, 1, 0, "complete", 9 * DAY, frozenset({2})),
    ]
    v = media_verdicts([0, 1, 2], gens, Policy(KEEP_DAYS, 7), 8 * DAY)
    assert (v[0].recyclable, v[0].until) == (False, 9 * DAY)
    assert v[0].why.startswith("needed by volume x generation 2 of ")
    v = media_verdicts([0, 1, 2], gens, Policy(KEEP_DAYS, 7), 10 * DAY)
    assert [v[m].recyclable for m in range(3)] == [True, True, False]
    assert v[2].until == 16 * DAY  # the earliest date (the newest complete generation stays until a newer one)


def test_generation_ranges() -> None:
    gens = [
        Gen(i, v, 1, n, 0, "complete", 0) for i, (v, n) in enumerate([("x", 1), ("x", 2), ("x", 3), ("x", 5), ("y", 2)])
    ]
    assert generation_ranges(gens) == "x generations 1-3,5, y generation 2"
