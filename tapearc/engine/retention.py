"""Retention: which generations a media pool keeps, and which of its media may be recycled.

Pure functions over catalog rows and a clock (``now``, seconds since the epoch): nothing here
reads the catalog, a medium or the time itself, so tests give any history and any date.

Which generations are **kept** (per volume name, across the pool's media sets):

- ``keep-full N``: the volume's last N complete full generations (``complete``: every part
  known; a ``complete-pending`` full, an earlier part unknown, does not count) and every
  generation made after the oldest of them (its incrementals, and incomplete ones, which are
  held until they are older than that full: "expired by time");
- ``keep-days D``: every generation younger than D days;
- ``keep-forever``: every generation;

and always: the newest complete (and the newest ``complete``) generation of each volume, every
generation still being written, and the whole base chain of each kept generation (an
incremental is useless without its bases). A volume with a generation dated after ``now`` (a
clock was wrong when it was written, or ``--now`` is earlier) keeps every generation: which is
the newest is not known, and a wrong guess would recycle the real newest one.

An incremental whose base chain is broken (a base was recycled with a medium it had a part on)
cannot be restored: it is kept only as a base of a kept generation (which cannot be).

A medium is **recyclable** only when every generation with any part on it is not kept; a
spanned generation lists every medium it has a part on, so a medium holding one part of a kept
generation (or of a base a kept generation needs) is never recyclable.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DAY = 86400

KEEP_FULL = "keep-full"
KEEP_DAYS = "keep-days"
KEEP_FOREVER = "keep-forever"
RETENTIONS = (KEEP_FULL, KEEP_DAYS, KEEP_FOREVER)


@dataclass(frozen=True, slots=True)
class Policy:
    retention: str  # KEEP_FULL | KEEP_DAYS | KEEP_FOREVER
    keep: int = 0  # N full generations, or D days

    def describe(self) -> str:
        if self.retention == KEEP_FULL:
            return f"keep the last {self.keep} full generation{'s' if self.keep != 1 else ''} of each volume"
        if self.retention == KEEP_DAYS:
            return f"keep generations for {self.keep} day{'s' if self.keep != 1 else ''}"
        return "keep every generation"


@dataclass(frozen=True, slots=True)
class Gen:
    """One generation, as retention sees it."""

    key: int  # the catalog's generations.id
    volume: str  # the volume's name (generations of one name in several media sets are one history)
    chain: int  # the catalog's volume row (bases are looked up within it)
    number: int
    base: int  # 0: a full generation
    state: str  # writing | complete | complete-pending | incomplete | damaged
    created: int
    media: frozenset[int] = frozenset()  # media ids holding a part of it

    @property
    def complete(self) -> bool:
        return self.state in ("complete", "complete-pending")

    @property
    def name(self) -> str:
        """``volume db generation 7 of 2026-12-21`` (a volume has a generation 7 in each of its
        media sets: the local date tells them apart)."""
        return f"volume {self.volume} generation {self.number} of {time.strftime('%Y-%m-%d', time.localtime(self.created))}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a medium is recyclable, and why (not)."""

    recyclable: bool
    why: str  # "expired", "holds nothing", or "needed by volume V generation G"
    until: int | None = None  # keep-days: the earliest date it becomes recyclable


def _order(g: Gen) -> tuple[int, int, int]:
    return (g.created, g.chain, g.number)


def orphans(gens: Sequence[Gen]) -> set[int]:
    """Incrementals whose base chain is broken (a base recycled, or never known): they cannot be
    restored, so nothing keeps them for their own sake."""
    by_number = {(g.chain, g.number): g for g in gens}
    out: set[int] = set()
    for g in gens:
        h: Gen | None = g
        while h is not None and h.base:
            h = by_number.get((h.chain, h.base))
            if h is None or h.key in out:
                out.add(g.key)
                break
    return out


def _own_keep(gens: Sequence[Gen], policy: Policy, now: int) -> set[int]:
    """The generations kept for their own sake (before adding base chains)."""
    if policy.retention == KEEP_FOREVER:
        return {g.key for g in gens}
    broken = orphans(gens)
    by_volume: dict[str, list[Gen]] = defaultdict(list)
    for g in gens:
        if g.key not in broken or g.state == "writing":
            by_volume[g.volume].append(g)
    kept: set[int] = set()
    for history in by_volume.values():
        history.sort(key=_order)
        if any(g.created > now for g in history):  # a clock was wrong: which is newest is not known
            kept.update(g.key for g in history)
            continue
        done = [g for g in history if g.complete]
        good = [g for g in done if g.state == "complete"]  # every part known: restorable
        kept.update(d[-1].key for d in (done, good) if d)  # the newest complete generation is never dropped
        kept.update(g.key for g in history if g.state == "writing")
        if policy.retention == KEEP_DAYS:
            kept.update(g.key for g in history if g.created > now - policy.keep * DAY)
            continue
        fulls = [g for g in good if g.base == 0]
        if len(fulls) <= policy.keep:
            kept.update(g.key for g in history)
            continue
        oldest = fulls[-policy.keep] if policy.keep > 0 else None
        if oldest is not None:
            kept.update(g.key for g in history if _order(g) >= _order(oldest))
    return kept


def _base_of(gens: Sequence[Gen]) -> dict[int, Gen]:
    by_number = {(g.chain, g.number): g for g in gens}
    out: dict[int, Gen] = {}
    for g in gens:
        b = by_number.get((g.chain, g.base)) if g.base else None
        if b is not None:
            out[g.key] = b
    return out


def kept_generations(gens: Sequence[Gen], policy: Policy, now: int) -> dict[int, Gen]:
    """Every kept generation's key -> the generation that keeps it (itself, or the newest kept
    generation whose base chain it is in)."""
    base = _base_of(gens)
    by_key = {g.key: g for g in gens}
    why: dict[int, Gen] = {}
    for k in sorted(_own_keep(gens, policy, now), key=lambda k: _order(by_key[k]), reverse=True):
        if k in why:  # already in the base chain of a newer kept generation
            continue
        g: Gen | None = by_key[k]
        while g is not None and g.key not in why:
            why[g.key] = by_key[k]
            g = base.get(g.key)
    return why


def expiry(g: Gen, policy: Policy) -> int | None:
    """When a generation stops being kept for its own sake, if a date says it (keep-days)."""
    return g.created + policy.keep * DAY if policy.retention == KEEP_DAYS else None


def media_verdicts(media: Iterable[int], gens: Sequence[Gen], policy: Policy, now: int) -> dict[int, Verdict]:
    """Each medium of ``media`` -> whether it may be recycled now, and why (not)."""
    kept = kept_generations(gens, policy, now)
    on: dict[int, list[Gen]] = defaultdict(list)
    for g in gens:
        for m in g.media:
            on[m].append(g)
    out: dict[int, Verdict] = {}
    for m in media:
        held = sorted(on.get(m, []), key=_order)
        if not held:
            out[m] = Verdict(True, "holds nothing")
            continue
        needed = [g for g in held if g.key in kept]
        if not needed:
            out[m] = Verdict(True, "expired")
            continue
        holder = max((kept[g.key] for g in needed), key=_order)
        dates = [expiry(kept[g.key], policy) for g in needed]
        until = None if any(d is None for d in dates) else max(d for d in dates if d is not None)
        skew = " (dated after now: a clock was wrong when it was written, or is now)" if holder.created > now else ""
        out[m] = Verdict(False, f"needed by {holder.name}{skew}", until)
    return out


def generation_ranges(gens: Iterable[Gen]) -> str:
    """``X generations 1-3, Y generation 2``: what a set of generations is, briefly."""
    by_volume: dict[str, list[int]] = defaultdict(list)
    for g in gens:
        by_volume[g.volume].append(g.number)
    parts = []
    for volume, numbers in sorted(by_volume.items()):
        numbers = sorted(set(numbers))
        spans: list[str] = []
        start = prev = numbers[0]
        for n in [*numbers[1:], None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            if n is not None:
                start = prev = n
        word = "generation" if len(numbers) == 1 else "generations"
        parts.append(f"{volume} {word} {','.join(spans)}")
    return ", ".join(parts)


def check_policy(policy: Policy) -> str | None:
    """Why a policy is not usable, or None."""
    if policy.retention not in RETENTIONS:
        return f"unknown retention {policy.retention!r}"
    if policy.retention != KEEP_FOREVER and policy.keep < 1:
        return f"{policy.retention} needs a number of at least 1 (got {policy.keep})"
    return None


__all__ = [
    "DAY",
    "KEEP_DAYS",
    "KEEP_FOREVER",
    "KEEP_FULL",
    "Gen",
    "Policy",
    "Verdict",
    "check_policy",
    "expiry",
    "generation_ranges",
    "kept_generations",
    "media_verdicts",
    "orphans",
]
