"""What a backup reports: filled in by the generation writer as it writes, returned by backup()."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class BackupResult:
    medium: str
    volume: str
    generation: int
    tape_file: int
    volume_size: int
    block_size: int
    record_size: int
    compression: str
    key_fingerprint: str | None = None  # --encrypt: the key's fingerprint (1a2b:3c4d:...), None: plain
    chunks: int = 0
    records: int = 0
    data_blocks: int = 0
    zero_blocks: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    new_medium: bool = False
    seconds: float = 0.0
    complete: bool = True
    kind: str = "full"
    base_generation: int = 0
    unchanged_blocks: int = 0
    warnings: list[str] = field(default_factory=list)
    change: dict[str, object] | None = None  # how it was read: change source, trusted, checkpoints
    volume_uuid: str = ""
    source_path: str = ""  # the source as recorded (absolute, symlinks not resolved)
    source_real: str = ""  # the same with symlinks resolved
    parts: list[dict[str, object]] = field(default_factory=list)  # one per medium the generation is on
    early_warnings: list[dict[str, object]] = field(default_factory=list)  # where early warning was hit
    verified: list[dict[str, object]] = field(default_factory=list)  # --verify: each tape file read back
    source_bytes_read: int = 0  # bytes read from the source (holes and vouched blocks are not read)
    # --verify-unchanged: blocks a change tracker vouched for that had changed, inclusive ranges
    tracker_missed: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["mb_per_s"] = round(self.volume_size / self.seconds / 1e6, 2) if self.seconds > 0 else None
        return d
