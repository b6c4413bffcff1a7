"""Shared test helpers: sample volumes of several shapes."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

KiB = 1024
MiB = 1024 * KiB

# A test session started in the background of a non-interactive shell (`cmd &`, nohup, some CI
# runners) inherits "ignore SIGINT", and so would every command the tests start: tapearc keeps an
# inherited ignore on purpose, so the Ctrl-C tests would see no interrupt at all. The commands
# the tests start get SIGINT's default action (a handled signal is reset to it at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class FakeTime:
    """A clock whose sleeps advance it, for the simulator's tape clock (tapesim.transport
    TapeClock, SimDrive(clock=, sleep=)): every figure is exact arithmetic, no timing."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s > 0
        self.slept.append(s)
        self.now += s

    @property
    def total(self) -> float:
        return sum(self.slept)


def make_volume(path: Path, shape: str, block_size: int = 64 * KiB, seed: int = 1) -> bytes:
    """Write a volume of a given shape to ``path`` and return its bytes."""
    rng = random.Random(seed)
    bs = block_size
    if shape == "random":
        data = rng.randbytes(3 * MiB)
    elif shape == "zero-runs":  # long runs of zeros between data, zero blocks at both ends
        data = bytes(5 * bs) + rng.randbytes(3 * bs) + bytes(40 * bs) + rng.randbytes(bs // 2) + bytes(bs * 7 + bs // 2)
    elif shape == "all-zero":
        data = bytes(2 * MiB + 3)
    elif shape == "repeated":
        data = (b"repeated-pattern-0123456789abcdef" * 100000)[: 2 * MiB]
    elif shape == "unaligned":  # not a multiple of the block size
        data = rng.randbytes(bs * 17 + 1234)
    elif shape == "empty":
        data = b""
    elif shape == "tiny":  # smaller than one block
        data = rng.randbytes(1000)
    elif shape == "one-byte":
        data = b"\x01"
    elif shape == "mixed":  # data with isolated zero blocks in between (many runs per chunk)
        parts = []
        for i in range(70):
            parts.append(bytes(bs) if i % 3 == 1 else rng.randbytes(bs))
        data = b"".join(parts) + rng.randbytes(77)
    else:
        raise ValueError(shape)
    path.write_bytes(data)
    return data


SHAPES = ["random", "zero-runs", "all-zero", "repeated", "unaligned", "empty", "tiny", "one-byte", "mixed"]


@pytest.fixture(params=["sim", "dir"])
def media_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sim":
        return f"sim:{tmp_path / 'tape.tap'}"
    return f"dir:{tmp_path / 'medium'}"


@pytest.fixture(autouse=True, scope="session")
def _private_session_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module- and session-scoped fixtures run before any test's own folders are set: they get
    a catalog and XDG folders of the session's, never the user's real catalog (a module fixture
    that made a backup with the default catalog once migrated the real one)."""
    base = tmp_path_factory.mktemp("session-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAPEARC_CATALOG", str(base / "catalog.sqlite"))
        mp.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
        mp.setenv("XDG_STATE_HOME", str(base / "xdg-state"))
        yield


@pytest.fixture(autouse=True)
def _private_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own catalog (commands run in subprocesses inherit it), and its own
    XDG folders: a test that leaves TAPEARC_CATALOG out (the default location) or logs an
    internal error never touches the user's real catalog or log."""
    path = tmp_path / "catalog.sqlite"
    monkeypatch.setenv("TAPEARC_CATALOG", str(path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return path
