"""Sizes as users write them: ``64K``, ``1M``, ``10MiB``, ``2G``, ``4096`` (binary multiples)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_RE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse a size; K, M, G, T, P are powers of 1024 (``KiB`` and ``KB`` are accepted alike)."""
    m = _RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 65536, 64K, 1M, 10GiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def format_size(n: int) -> str:
    """Human-readable binary size: ``1.5 MiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} B"
