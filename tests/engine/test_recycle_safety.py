"""Recycling never destroys a generation still needed: adversarial cases of retention (a full
whose parts are not all known, a generation dated after now) and of the choice of the medium a
pooled backup writes over (a medium holding more than the catalog knows of it)."""

from __future__ import annotations

from tapearc.engine.retention import DAY, KEEP_DAYS, KEEP_FULL, Gen, Policy, kept_generations, media_verdicts


def gen(key: int, number: int, day: float, medium: int, state: str = "complete", chain: int = 1) -> Gen:
    return Gen(key, "x", chain, number, 0, state, int(day * DAY), frozenset({medium}))


def test_a_full_missing_parts_does_not_count_as_a_kept_full() -> None:
    """complete-pending: the last part is known, an earlier one not: not (yet) restorable. It
    must not push the last good full out of keep-full 1."""
    gens = [gen(1, 1, 0, 0), gen(2, 1, 1, 1, "complete-pending", chain=2)]
    v = media_verdicts([0, 1], gens, Policy(KEEP_FULL, 1), 2 * DAY)
    assert not v[0].recyclable and not v[1].recyclable, v
    assert 1 in kept_generations(gens, Policy(KEEP_FULL, 1), 2 * DAY)


def test_a_generation_dated_after_now_does_not_expire_the_newest() -> None:
    """Clock skew: a full written while the clock was a year ahead is not the newest full; the
    fulls written since (the newest of them above all) are not recyclable because of it."""
    gens = [gen(1, 1, 400, 0), gen(2, 1, 1, 1, chain=2), gen(3, 1, 2, 2, chain=3)]
    for policy in (Policy(KEEP_FULL, 1), Policy(KEEP_DAYS, 1)):
        v = media_verdicts([0, 1, 2], gens, policy, 3 * DAY)
        assert not v[2].recyclable, (policy, v)  # the real newest full
        assert not v[1].recyclable, (policy, v)  # which one is newer is not known
        assert "dated after now" in v[0].why, v[0]
