"""tapearc's errors: one class per kind of failure, each with its own exit code.

Every error renders as one line naming *what* went wrong and *where* (medium, tape file,
record, block range), plus an optional hint saying what to do next. The CLI's single error
boundary prints ``str(err)`` (and the hint) and exits with ``err.exit_code``.

Library code raises these; it never prints and never exits. Lower layers (format codec,
media backends) fill in what they know; upper layers add location with :meth:`TapearcError.at`.

The table of codes is documented in docs/errors.md; keep the two in step.
"""

from __future__ import annotations

from typing import Any


class TapearcError(Exception):
    """Something went wrong."""

    exit_code = 1
    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        medium: str | None = None,
        tape_file: int | None = None,
        record: int | None = None,
        blocks: tuple[int, int] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.medium = medium
        self.tape_file = tape_file
        self.record = record
        self.blocks = blocks  # inclusive range of volume block ids (first, last)
        self.details = details

    def at(
        self,
        *,
        medium: str | None = None,
        tape_file: int | None = None,
        record: int | None = None,
        blocks: tuple[int, int] | None = None,
    ) -> TapearcError:
        """Fill in location fields that are still unknown; returns self for ``raise err.at(...)``."""
        if self.medium is None and medium is not None:
            self.medium = medium
        if self.tape_file is None and tape_file is not None:
            self.tape_file = tape_file
        if self.record is None and record is not None:
            self.record = record
        if self.blocks is None and blocks is not None:
            self.blocks = blocks
        return self

    def where(self) -> str:
        parts = []
        if self.medium is not None:
            parts.append(f"medium {self.medium}")
        if self.tape_file is not None:
            parts.append(f"tape file {self.tape_file}")
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.blocks is not None:
            first, last = self.blocks
            parts.append(f"blocks {first}-{last}" if last != first else f"block {first}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "error": self.kind,
            "exit_code": self.exit_code,
            "message": self.message,
        }
        for key in ("medium", "tape_file", "record"):
            val = getattr(self, key)
            if val is not None:
                out[key] = val
        if self.blocks is not None:
            out["blocks"] = list(self.blocks)
        if self.hint:
            out["hint"] = self.hint
        out.update({k: v for k, v in self.details.items() if isinstance(v, (int, str, float, bool))})
        return out


class InternalError(TapearcError):
    """A bug in tapearc (an unexpected exception); please report it."""

    exit_code = 1
    kind = "internal"


# 2 is the usage error code of the command-line parser (click/typer).


class SourceError(TapearcError):
    """The source volume is missing, unreadable, or changed while being read."""

    exit_code = 3
    kind = "source"


class TargetError(TapearcError):
    """The restore target cannot be used (exists and is not empty, not writable, ...)."""

    exit_code = 4
    kind = "target"


class TargetTooSmallError(TargetError):
    """The restore target (a block device) is smaller than the volume."""

    exit_code = 5
    kind = "target-too-small"


class NoSuchGenerationError(TapearcError):
    """The medium holds no (such) generation to restore."""

    exit_code = 6
    kind = "no-generation"


class VolumeMismatchError(TapearcError):
    """A backup's source is not the volume its name belongs to in the media set (another path
    under the same name), or --new-volume asked for a name already in use. Nothing was written."""

    exit_code = 7
    kind = "volume-mismatch"


class SameObjectError(TapearcError):
    """Two roles of one job name the same object (resolved by identity: device and inode, block
    device numbers, symlinks followed): a restore target that is the medium it reads or a file
    inside a dir: medium, a backup source that is the medium it writes, a copy onto itself."""

    exit_code = 8
    kind = "same-object"


class MediumError(TapearcError):
    """Base of the errors about a medium (tape, image, folder). Abstract: it is never raised
    itself (each failure raises a subclass with its own exit code); catch it to catch them all."""

    kind = "medium"

    def __init__(self, message: str, **kw: Any) -> None:
        if type(self) is MediumError:
            raise TypeError("MediumError is abstract: raise one of its subclasses")
        super().__init__(message, **kw)


class MediumUnavailableError(MediumError):
    """The medium cannot be opened: missing device or path, no tape loaded, busy."""

    exit_code = 10
    kind = "medium-unavailable"


class NotTapearcMediumError(MediumError):
    """The medium is blank or holds something other than a tapearc volume label."""

    exit_code = 11
    kind = "not-tapearc"


class MediumFullError(MediumError):
    """The medium reached its physical end; nothing more can be written to it."""

    exit_code = 12
    kind = "medium-full"


class WriteProtectedError(MediumError):
    """The medium is write-protected (or opened read-only) and a write was asked for."""

    exit_code = 13
    kind = "write-protected"


class MediumIOError(MediumError):
    """The device reported an I/O error reading or writing a record."""

    exit_code = 14
    kind = "medium-io"


class MediumStateError(MediumIOError):
    """The medium cannot do what was asked in its present state: a stream medium (``-``) asked
    to move backwards or read out of order, or used after it was closed."""

    kind = "medium"


class RecordTooLargeError(MediumError):
    """A record on the medium is larger than the largest record the drive can read."""

    exit_code = 15
    kind = "record-too-large"


class CatalogError(TapearcError):
    """The catalog database cannot be opened or is not a tapearc catalog."""

    exit_code = 16
    kind = "catalog"


class CatalogUnreachableError(CatalogError):
    """A PostgreSQL catalog cannot be reached or refuses us: no server at the address, a wrong
    password or user, a database that does not exist, the connection lost."""

    exit_code = 38
    kind = "catalog-unreachable"


class CatalogSpecError(CatalogError):
    """A ``--catalog`` / ``TAPEARC_CATALOG`` / job file ``catalog`` that names no usable catalog:
    a URL of another scheme, a PostgreSQL URL that cannot be parsed, or PostgreSQL support
    (psycopg) not installed."""

    exit_code = 39
    kind = "catalog-spec"


class ChangerError(MediumError):
    """The changer could not do what was asked (empty slot, drive full, device error, timeout)."""

    exit_code = 17
    kind = "changer"


class FormatError(TapearcError):
    """A structure on the medium does not decode: malformed, unknown magic, unsupported version."""

    exit_code = 21
    kind = "format"


class BadMagicError(FormatError):
    """A record does not start with the magic number expected there."""

    kind = "bad-magic"


class UnsupportedVersionError(FormatError):
    """The structure was written by a newer (or unknown) version of the format."""

    kind = "unsupported-version"


class MalformedError(FormatError):
    """Fields of a structure contradict each other or are out of range."""

    kind = "malformed"


class TruncatedError(FormatError):
    """A structure (or the medium) ends before its declared length."""

    exit_code = 22
    kind = "truncated"


class DamagedDataError(FormatError):
    """Data on the medium is damaged: a header or payload CRC does not match."""

    exit_code = 20
    kind = "damaged"


class CRCError(DamagedDataError):
    """A CRC-32C check failed."""

    kind = "crc"


class MediaDifferError(DamagedDataError):
    """Two media that should be identical (a medium and its copy or dump) differ."""

    exit_code = 20
    kind = "media-differ"


class IncompleteChainError(TapearcError):
    """A generation the restore needs is incomplete or missing from the catalog."""

    exit_code = 22
    kind = "incomplete-chain"


class Interrupted(TapearcError):
    """Interrupted by the user (Ctrl-C)."""

    exit_code = 130
    kind = "interrupted"


class UsageError(TapearcError):
    """An option or argument does not fit (a record size the drive cannot take, ...)."""

    exit_code = 2
    kind = "usage"


class MediumInUseError(MediumError):
    """The medium is labeled (holds data) and would be overwritten; add --force to do so."""

    exit_code = 18
    kind = "medium-labeled"


class WrongMediumError(MediumError):
    """The medium in the drive is not the one the job may write to (another media set, not the
    last medium of its set); nothing was written."""

    exit_code = 19
    kind = "wrong-medium"


class PartialRestoreError(DamagedDataError):
    """A restore finished but some block ranges could not be restored (damaged or unreadable
    chunks); they read as zeros in the target. The message lists them by volume offset."""

    exit_code = 23
    kind = "partial"


class ChangeSourceError(TapearcError):
    """A change source for an incremental cannot be used as given: a ``--changed-blocks`` file
    that does not parse (malformed XML, JSON or CSV; negative, overlapping or out-of-volume
    ranges; an unknown unit), or options that contradict each other. Nothing was written."""

    exit_code = 26
    kind = "change-source"


class TrackerMissedError(TapearcError):
    """``backup --verify-unchanged`` found blocks the change tracker called unchanged that were
    not: the generation is complete and correct (every block was read), but the tracker cannot be
    trusted. The message lists the block ranges."""

    exit_code = 27
    kind = "tracker-missed"


class TempFileError(TapearcError):
    """A temporary file in ``$TMPDIR`` (a large trailer read back, verify's chunk digests, an
    incremental's base digests, a trailer being written) cannot be written (no room) or read back
    (an I/O error, the file removed or cut underneath). The message names what and the folder."""

    exit_code = 28
    kind = "temp-file"


class WrongPassphraseError(TapearcError):
    """The passphrase does not unwrap the key record (of a key file, a paper key or a medium):
    the message names where the record came from and the key's fingerprint. Nothing was written."""

    exit_code = 31
    kind = "wrong-passphrase"


class KeyFileError(TapearcError):
    """A key file, paper key text or key record is unreadable, malformed or refused (a changed
    byte, a mistyped line, a file that exists already, a medium without a key record): the
    message names the file (and line) or the medium. Nothing was written."""

    exit_code = 32
    kind = "key-file"


class MediaSetKeyError(TapearcError):
    """A backup would mix plain and encrypted generations in one media set: ``--encrypt`` into a
    media set whose media hold plain generations. A media set has one key (or none) for all its
    media: encrypted backups start a new media set (a new medium or label). Nothing was written."""

    exit_code = 33
    kind = "media-set-key"


class JobFileError(TapearcError):
    """A job file (``tapearc run JOBFILE``) cannot be used: unreadable, not TOML, a missing or
    unknown key, a value of the wrong type or out of range, two volumes of one name. The message
    names the file, the table and the key. Nothing was backed up."""

    exit_code = 34
    kind = "job-file"


class JobPartialError(TapearcError):
    """``tapearc run``: the job ran, but not every volume was backed up: some failed (each with
    its own error in the summary), or were not run because a medium-level failure stopped the
    run. The summary says which, and why."""

    exit_code = 35
    kind = "job-partial"


class PoolNoMediumError(TapearcError):
    """``backup --pool`` (or a job's ``pool``): no medium of the changer's library can be
    written for the pool: the pool's current set has no room (or the allocation wants a new
    set), there is no blank medium, and none of the pool's media is recyclable (each still holds
    a needed generation), or is off-site or write-protected. The message names the pool and why
    each medium was not usable. Nothing was written."""

    exit_code = 36
    kind = "pool-no-medium"


class PoolError(TapearcError):
    """A media pool command cannot be done: an unknown pool, a pool name that exists already, a
    retention or allocation that is not usable, a medium (barcode or label) the catalog does not
    know. Nothing was changed."""

    exit_code = 37
    kind = "pool"


class LeaseBusyError(TapearcError):
    """A drive, medium or changer is leased by another tapearc process (on this host or another
    one sharing the catalog) and was not released within the wait allowed (``--wait``, a job's
    ``wait``; default: fail at once). The message names the holder: host, pid, purpose, since
    when, and when its lease expires. Nothing was written."""

    exit_code = 40
    kind = "lease-busy"


class LeaseLostError(TapearcError):
    """A lease this process held was lost: another process took it over after it expired (the
    heartbeat could not renew it in time: the catalog was unreachable, the process stopped), or an
    operator broke it (``tapearc lease break``). The process stopped before writing more; the
    message names the resource and who holds it now."""

    exit_code = 41
    kind = "lease-lost"


class DrivesError(TapearcError):
    """``tapearc run`` with ``drives = N`` (or ``--drives N``), or a restore on several drives:
    the drives cannot be had: the library has fewer drives than asked for, the job names a
    single drive without a library (a changer with several drives), or every drive of the library
    is in use by another process. The message names the library, its drives and what was asked
    for. Nothing was written."""

    exit_code = 42
    kind = "drives"


class OneVolumeOptionError(TapearcError):
    """A restore of several volumes (several ``--volume``, or ``--drives N``) was given an option
    that chooses one volume's restore: ``--generation N`` and ``--assume-generation K`` (a
    generation number counts one volume's generations: it names no generation of the others)
    or ``--to -`` (one volume's data on standard output). The message names the option and
    what to give instead (``--at TIME`` chooses every volume's generation). Nothing was read."""

    exit_code = 44
    kind = "one-volume-option"


class OutputError(TapearcError):
    """Standard output cannot be written: it is closed (``>&-``), or a write to it failed (a full
    disk: ``> /dev/full``, an I/O error). Standard output carries a command's report (its text
    or ``--json``), written once the work is done: the message says whether anything was done."""

    exit_code = 45
    kind = "output"


class ServerError(TapearcError):
    """The command server (``tapearc server``, docs/server.md) cannot be started, reached or
    stopped: its socket's folder is not this user's alone, another server listens there, the
    path is not a socket; or a server that was running a command ended before the command did
    (the command's outcome is unknown)."""

    exit_code = 46
    kind = "server"


class _WithRanges(TapearcError):
    """An error whose JSON form also lists block ranges (``ranges``: list of dicts)."""

    def __init__(self, message: str, *, ranges: list[dict[str, Any]] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.ranges = ranges or []

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["ranges"] = self.ranges
        return out


class SubstitutedRestoreError(_WithRanges):
    """A restore finished, but some blocks are not the requested generation's: older versions
    (``--fallback-older``), or a generation older than the newest because the newest is
    incomplete or damaged. The message lists them."""

    exit_code = 24
    kind = "substituted"


class MediaMissingError(_WithRanges):
    """A medium the restore needs never arrived (no changer, the changer has none, the operator
    did not load it in time). The restore stopped and left no half-filled target, or (with
    ``--partial``) finished with the blocks it holds reading as zeros."""

    exit_code = 25
    kind = "media-missing"


class KeyRequiredError(TapearcError):
    """The data is encrypted and no key was given (``--key FILE``). The message names the
    fingerprint of the key the medium wants. Nothing was written."""

    exit_code = 29
    kind = "key-required"


class WrongKeyError(TapearcError):
    """The key given is not the one the data was encrypted with: the message names both
    fingerprints (the medium's and the key's). Nothing was written."""

    exit_code = 30
    kind = "wrong-key"


class ChunkAuthError(DamagedDataError):
    """An encrypted chunk's authentication tag (AES-256-GCM) does not match: its payload or
    header was changed, or it was moved to another place (generation, part, volume, media set).
    Reported like a CRC failure, with the chunk and its location."""

    kind = "auth"
