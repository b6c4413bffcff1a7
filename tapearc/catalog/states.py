"""The states of a generation in the catalog (the ``generations.state`` column).

A :class:`GenerationState` is a ``StrEnum``: it is stored as its string and compares equal to it,
so rows read back from SQLite and the words shown to users stay the same strings.
"""

from __future__ import annotations

from enum import StrEnum


class GenerationState(StrEnum):
    """Where a generation stands; see docs/catalog.md."""

    WRITING = "writing"
    """Its backup is running (a backup that died leaves it here until the next open marks it
    incomplete)."""

    COMPLETE = "complete"
    """Its last part's trailer was read and its chunks run 0..n-1 without a gap: restorable."""

    COMPLETE_PENDING = "complete-pending"
    """Its last part is known but an earlier part (on another medium) is not catalogued yet."""

    INCOMPLETE = "incomplete"
    """Its backup was interrupted or the medium filled up: never restored as if complete."""

    DAMAGED = "damaged"
    """Its trailer is unreadable and could not be rebuilt from its chunks."""

    AUTO = "auto"
    """Not stored: asks :meth:`Catalog.finish_generation` to derive the state from the chunks."""


#: The states of a generation whose last part is known.
FINAL_KNOWN = frozenset({GenerationState.COMPLETE, GenerationState.COMPLETE_PENDING})
