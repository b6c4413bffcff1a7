"""Getting the medium a job needs into the drive: from a changer, an operator, or as it is.

A job names a drive (``--media``) and optionally a changer (``--changer``). ``sim:DIR`` where
DIR is a simulated library (tapesim library) names both: its drive 0 and its slots. When the
job needs another medium (the next one of a media set while spanning, or a given medium while
restoring) the source asks the changer for it, checking each candidate's label: it never
writes on a medium of another set or on a labeled medium when it wants a blank one.

With leases (:mod:`tapearc.catalog.leases`, given by the CLI from the catalog; docs/leases.md)
a source with a changer holds ``drive:<library>:<index>`` for its whole life, takes
``changer:<library>`` around each load, unload and inventory, and holds ``medium:<uuid>`` for the
medium in its drive (one at a time): a reader that needs a medium another process holds waits for
it (the message names the holder), within ``operator_timeout`` (``--wait``; None: as long as it
takes). :meth:`MediaSource.for_free_drive` takes any free drive of a library.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tapearc import format as fmt
from tapearc import interrupts
from tapearc.catalog.db import Catalog
from tapearc.engine.identity import known_medium
from tapearc.engine.tapefiles import LabelProbe, probe_label
from tapearc.errors import MediumIOError, MediumUnavailableError, TapearcError, UsageError
from tapearc.media.base import Position, TapeDrive

if TYPE_CHECKING:
    from tapearc.catalog.leases import Lease, Leases
    from tapearc.media.changer import Changer, ChangerStatus, DriveBayStatus

log = logging.getLogger(__name__)

_DRIVE_IMAGE = re.compile(r"^drive-(\d+)\.tap$")


def library_dir(spec: str) -> str | None:
    """The folder of a simulated library named by ``sim:DIR``, else None."""
    if spec.startswith("sim:"):
        path = spec[4:]
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "library.json")):
            return path
    return None


def library_id(changer: Changer | None) -> str | None:
    """The name a library's leases use: for a simulated library its folder's real path; for an
    mtx changer its SCSI serial number when sysfs gives it (the same library seen from any host),
    else this host's name and the device's real path; for a serial autoloader this host's name
    and its port (a ``socket://`` URL as it is). None for the operator (no library)."""
    if changer is None:
        return None
    from tapearc.media.changer import AttendedChanger  # (a changer's module: not imported without one)

    if isinstance(changer, AttendedChanger) or getattr(changer, "name", "") == "operator":
        return None
    import socket

    name = changer.name
    kind, _, rest = name.partition(":")
    if kind == "sim":
        return os.path.realpath(rest)
    if kind == "mtx":
        serial = scsi_serial(rest)
        return f"serial={serial}" if serial else f"{socket.gethostname()}:{os.path.realpath(rest)}"
    if rest.startswith("socket://"):
        return name
    return f"{socket.gethostname()}:{name}"


def scsi_serial(device: str) -> str | None:
    """The unit serial number (VPD page 0x80) of a SCSI generic device, from sysfs."""
    base = os.path.basename(os.path.realpath(device))
    try:
        with open(f"/sys/class/scsi_generic/{base}/device/vpd_pg80", "rb") as f:
            page = f.read()
    except OSError:
        return None
    text = page[4 : 4 + page[3]].decode("ascii", "replace").strip() if len(page) > 4 else ""
    return text or None


def drive_resource(library: str, index: int) -> str:
    return f"drive:{library}:{index}"


def drive_index_of(spec: str, changer: Changer | None, given: int | None = None) -> int:
    """The changer's number of the drive ``spec`` names: ``given`` (``--changer-drive N``, a job's
    ``changer_drive``, the position in a job's list of drives) when there is one, else N of
    ``sim:DIR/drive-N.tap`` of the changer's folder, else 0. A ``given`` number that another
    drive's image contradicts is a UsageError."""
    named = _sim_drive_number(spec, changer)
    if given is None:
        return 0 if named is None else named
    if named is not None and named != given:
        raise UsageError(f"changer drive {given}: {spec} is drive {named} of library {changer.name if changer else ''}")
    return given


def _sim_drive_number(spec: str, changer: Changer | None) -> int | None:
    """N when ``spec`` is ``sim:DIR/drive-N.tap`` of the simulated library ``changer``."""
    if changer is None or not spec.startswith("sim:") or not changer.name.startswith("sim:"):
        return None
    path = spec[4:]
    m = _DRIVE_IMAGE.match(os.path.basename(path))
    same = os.path.realpath(os.path.dirname(os.path.abspath(path))) == os.path.realpath(changer.name[4:])
    return int(m.group(1)) if m and same else None


def check_drive_number(changer: Changer, index: int) -> None:
    """UsageError (one line naming the changer and its drives) unless the changer's inventory
    has a drive ``index``."""
    numbers = [d.number for d in changer.status().drives]
    if index not in numbers:
        have = ", ".join(str(n) for n in numbers) or "none"
        raise UsageError(
            f"changer drive {index}: changer {changer.name} has no drive {index} (its drives: {have})",
            hint="mtx status lists them as Data Transfer Element N; tapearc drive status shows them",
        )


def _under_leases(
    changer: Changer | None, leases: Leases | None, library: str | None, purpose: str, wait: float | None
) -> Changer | None:
    """``changer`` with its every move made under the library's changer lease (with leases and a
    library), else ``changer`` itself."""
    if changer is None or leases is None or library is None:
        return changer
    from tapearc.engine.leasedchanger import LeasedChanger

    return LeasedChanger(changer, leases, library, purpose, wait)


@dataclass(frozen=True, slots=True)
class AppendHint:
    """Where the last backup through a :class:`MediaSource` ended: its drive (the very object),
    the medium's label, the drive's position right after the generation's filemark and the key
    records at the start of that medium. The next backup on the same drive appends there
    without rewinding to read the label and walking every tape file again (minutes of tape
    motion per volume on a real drive), as long as the drive is the same open drive, still at
    that position (a medium changed in between is at its beginning), and the medium's lease held.
    Anything else: the medium is inspected from its beginning, as always."""

    drive: TapeDrive
    label: fmt.Label
    position: Position
    key_records: tuple[fmt.WrappedKey, ...]


@dataclass(frozen=True, slots=True)
class PendingGeneration:
    """A generation whose closing filemark was immediate (a job's: the drive keeps streaming into
    the next volume): on the medium once the drive has written its buffer out, recorded complete
    in the catalog only then (:meth:`MediaSource.settle`); until then its row says ``writing``."""

    gen_id: int
    volume: str
    generation: int
    what: str  # "generation 3 of volume 'a' on medium M (tape file 5)"
    record: Callable[[], None]  # its final catalog state: complete
    abandon: Callable[[], None]  # the sync failed: incomplete (the medium may hold it whole; scan tells)
    note: str = ""  # what a Ctrl-C's message says of it until it is settled (tapearc.interrupts)
    # the thread that wrote it: only it records it (with its catalog connection), see settle()
    thread: int = field(default_factory=threading.get_ident)


class MediaSource:
    """The drive of a job and the means to change its medium."""

    #: the ttl of the leases it takes (None: the Leases', $TAPEARC_LEASE_TTL; tests shorten it)
    lease_ttl: float | None = None

    def __init__(
        self,
        spec: str,
        *,
        write: bool,
        changer: Changer | None = None,
        catalog: Catalog | None = None,
        drive: TapeDrive | None = None,
        operator_timeout: float | None = None,
        leases: Leases | None = None,
        purpose: str = "",
        drive_lease: Lease | None = None,
        drive_index: int | None = None,
        check_drive: bool = False,
    ) -> None:
        """``drive_index``: the changer's number of the drive ``spec`` (default: N of
        ``sim:DIR/drive-N.tap``, else 0; ``sim:DIR`` alone: that library's drive-N.tap);
        ``check_drive``: check it against the changer's inventory (UsageError naming the drives
        it has)."""
        from tapearc.media import open_medium

        self._open_medium = open_medium
        self.write = write
        self.catalog = catalog
        self.operator_timeout = operator_timeout
        lib = library_dir(spec)
        if lib is not None and changer is None:
            from tapearc.media.changers import open_changer

            changer = open_changer(f"sim:{lib}")
            spec = f"sim:{os.path.join(lib, f'drive-{drive_index or 0}.tap')}"
        self.spec = spec
        try:
            self.drive_index = drive_index_of(spec, changer, drive_index)
        except UsageError:
            if changer is not None:
                changer.close()
            raise
        self.leases = leases
        self.purpose = purpose or ("backup" if write else "read")
        self.library = library_id(changer) if leases is not None else None
        self.drive_lease = drive_lease
        self.medium_lease: Lease | None = None
        self.pinned = False  # medium(): the lease held is the wanted medium's, kept while it is searched for
        self.append_hint: AppendHint | None = None  # set by a backup that ended cleanly on this drive
        self.defer_sync = False  # a job's runner: generations end with immediate filemarks (settle())
        self.pending: list[PendingGeneration] = []  # written, waiting for the drive's sync
        self.unsettled: list[tuple[PendingGeneration, TapearcError]] = []  # their sync failed: incomplete
        self.changer = _under_leases(changer, leases, self.library, self.purpose, operator_timeout)
        self.drive: TapeDrive | None = drive
        #: when no blank medium is left for a spanning backup: loads a recyclable medium of the
        #: backup's media pool (engine.pools.load_spare), which is then labelled as the next one
        self.spare: Callable[[], TapeDrive] | None = None
        try:
            self._take_drive(check_drive)
        except BaseException:
            self.close()
            raise

    def _take_drive(self, check: bool) -> None:
        """Check the drive's number against the changer's inventory (``check``) and take its
        lease (with leases, unless it was given)."""
        if self.drive is not None:
            return
        if check and self.changer is not None and not self.is_operator:
            check_drive_number(self.changer, self.drive_index)
        if self.drive_lease is None and self.leases is not None and self.library is not None:
            self.drive_lease = self.leases.acquire(
                drive_resource(self.library, self.drive_index),
                purpose=self.purpose,
                wait=self.operator_timeout,
                ttl=self.lease_ttl,
            )

    @classmethod
    def for_free_drive(
        cls,
        changer_spec: str,
        *,
        write: bool,
        leases: Leases,
        purpose: str,
        catalog: Catalog | None = None,
        drive_specs: list[str] | None = None,
        wait: float | None = None,
    ) -> MediaSource:
        """A source on any free drive of the library ``changer_spec`` (``sim:DIR``: its drives
        are DIR/drive-N.tap; another changer needs ``drive_specs``, the ``--media`` of each of its
        drives, in the changer's drive order): the first drive whose lease is free, waiting up to
        ``wait`` seconds (None: as long as it takes) when every drive is held (LeaseBusyError)."""
        from tapearc.media.changers import open_changer

        changer = open_changer(changer_spec)
        try:
            library = library_id(changer)
            if library is None:
                raise MediumUnavailableError(f"changer {changer.name} has no drives to choose from")
            count = len(changer.status().drives)
            if drive_specs is None and changer.name.startswith("sim:"):
                drive_specs = [f"sim:{os.path.join(changer.name[4:], f'drive-{i}.tap')}" for i in range(count)]
            if not drive_specs:
                raise MediumUnavailableError(
                    f"changer {changer.name}: which device is each of its {count} drives? (give the drives' media)"
                )
            names = [drive_resource(library, i) for i in range(min(count, len(drive_specs)))]
            lease = leases.acquire_any(names, purpose=purpose, wait=wait, ttl=cls.lease_ttl)
        except BaseException:
            changer.close()
            raise
        index = names.index(lease.resource)
        return cls(
            drive_specs[index],
            write=write,
            changer=changer,
            catalog=catalog,
            operator_timeout=wait,
            leases=leases,
            purpose=purpose,
            drive_lease=lease,
            drive_index=index,
        )

    @classmethod
    def fixed(cls, drive: TapeDrive, catalog: Catalog | None = None) -> MediaSource:
        """A source that only has the medium already in ``drive``."""
        src = cls(drive.name, write=drive.writable, drive=drive, catalog=catalog)
        src._fixed = True
        return src

    _fixed = False

    @property
    def can_change(self) -> bool:
        return self.changer is not None and not self._fixed

    @property
    def is_operator(self) -> bool:
        return self.changer is not None and getattr(self.changer, "name", "") == "operator"

    def _open(self, write: bool | None = None) -> TapeDrive:
        w = self.write if write is None else write
        if self.spec.startswith("sim:") and not os.path.exists(self.spec[4:]):
            in_library = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(self.spec[4:])), "library.json"))
            if in_library or (self.can_change and not self._fixed):
                # a missing image in a library's or operator's drive means "no tape", not "make one"
                raise MediumUnavailableError(f"no tape in drive {self.spec}")
        log.info("open %s for %s", self.spec, "writing" if w else "reading")
        return self._open_medium(self.spec, write=w)

    def current(self) -> TapeDrive:
        """The drive with whatever medium it holds (loading the first slot into an empty
        library drive)."""
        if self.drive is not None:
            return self.drive
        try:
            self.drive = self._open()
        except MediumUnavailableError:
            ch = self.changer
            if ch is None or not self.can_change or self.is_operator:
                raise
            with self.changer_held(f"load into drive {self.drive_index}"):
                st = ch.status()
                bay = self.bay(st)
                if bay is not None and bay.full:
                    raise
                full = [s for s in st.slots if s.full]
                if not full:
                    raise MediumUnavailableError(f"the drive is empty and changer {ch.name} holds no tape") from None
                ch.load(full[0].number, self.drive_index)
            self.drive = self._open()
        if self.library is not None and self.medium_lease is None:
            probe = probe_label(self.drive)
            if probe.label is not None:
                self.hold_medium(probe.label.medium_uuid)
        return self.drive

    def changer_held(self, what: str) -> AbstractContextManager[None]:
        """The changer's lease held for a sequence of operations (nothing without leases)."""
        ch = self.changer
        if ch is None:
            return nullcontext()
        from tapearc.engine.leasedchanger import LeasedChanger

        return ch.held(what) if isinstance(ch, LeasedChanger) else nullcontext()

    def bay(self, st: ChangerStatus) -> DriveBayStatus | None:
        """This source's drive in a changer's inventory."""
        return next((d for d in st.drives if d.number == self.drive_index), None)

    def close_drive(self) -> None:
        self.append_hint = None
        try:
            self.settle()  # before the medium can change: what this drive wrote is on it, and recorded
        finally:
            if self.drive is not None:
                self.drive.close()
                self.drive = None

    def release(self) -> None:
        """Close the drive and let go of its medium's lease."""
        try:
            self.close_drive()
        finally:
            self.drop_medium()

    def drop_medium(self) -> None:
        self.append_hint = None
        self.settle()  # the medium's lease goes once what was written on it is there
        if self.medium_lease is not None:
            self.medium_lease.release()
            self.medium_lease = None

    def close(self) -> None:
        try:
            self.release()
        finally:
            try:
                if self.changer is not None and hasattr(self.changer, "close"):
                    self.changer.close()
            finally:
                if self.drive_lease is not None:
                    self.drive_lease.release()
                    self.drive_lease = None

    # ------------------------------------------------------------------ syncs

    def settle(self) -> None:
        """Have the drive write its buffer out (one sync), then record complete the generations
        pending on it, in order. When the sync fails they are recorded incomplete (kept in
        ``unsettled`` for the runner to report) and the drive's error is raised; a generation the
        catalog fails to record is kept there too. Nothing pending: nothing done. A Ctrl-C waits
        until the catalog says what the medium holds. Only the generations this thread wrote are
        settled: a drive closed by the main thread while its own thread still runs (a second
        Ctrl-C on a run on several drives) leaves that thread's rows ``writing``, as a killed
        process would; their record/abandon use the thread's catalog connection."""
        me = threading.get_ident()
        if not any(p.thread == me for p in self.pending):
            return  # (the list is left alone: another thread may be adding to it)
        with interrupts.deferred():  # from taking them to recording them: a Ctrl-C waits
            pending = [p for p in self.pending if p.thread == me]
            self.pending = [p for p in self.pending if p.thread != me]
            try:
                if self.drive is None:  # closed without a sync: nothing can say the buffer reached the medium
                    raise MediumIOError(f"drive {self.spec} was closed before it wrote its buffer to the medium")
                self.drive.sync()
            except TapearcError as e:
                self.unsettled += [(p, e) for p in pending]
                for p in pending:
                    _quietly(p.abandon)
                    interrupts.note(f"{p.what} was not confirmed by the drive: recorded incomplete", replaces=p.note)
                raise
            log.info("%s wrote its buffer out: %s", self.spec, "; ".join(p.what for p in pending))
            failed: list[tuple[PendingGeneration, TapearcError]] = []
            for p in pending:
                try:
                    p.record()
                    interrupts.note(f"{p.what} is complete", replaces=p.note)
                except TapearcError as e:  # on the medium, but the catalog did not take it: not complete there
                    failed.append((p, e))
                    interrupts.note(f"{p.what} is on the medium; the catalog did not record it", replaces=p.note)
            self.unsettled += failed
            if failed:
                raise failed[0][1]

    # ------------------------------------------------------------------ leases

    def hold_medium(self, medium_uuid: uuid.UUID, *, wait: float | str | None = "default") -> None:
        """Hold the lease of the medium ``medium_uuid`` (letting go of the one held before);
        a medium another process holds is waited for (``wait``, by default ``operator_timeout``),
        the wait message naming its holder. Only for the media of a library, with leases."""
        if self.leases is None or self.library is None:
            return
        resource = f"medium:{medium_uuid}"
        if self.medium_lease is not None:
            if self.medium_lease.resource == resource:
                return
            self.drop_medium()
        limit = self.operator_timeout if isinstance(wait, str) else wait
        self.medium_lease = self.leases.acquire(resource, purpose=self.purpose, wait=limit, ttl=self.lease_ttl)

    def writing(self, label: fmt.Label) -> None:
        """The engine is about to write on the medium of ``label`` (a new part of a generation):
        hold its lease (a medium labelled by this job gets its lease here) and stop if a lease
        was lost (LeaseLostError)."""
        self.hold_medium(label.medium_uuid)
        self.check_leases()

    def check_leases(self) -> None:
        """LeaseLostError if the lease of the drive or of the medium was lost (taken over after
        it expired, or broken by an operator): the engine stops before writing more."""
        for lease in (self.drive_lease, self.medium_lease):
            if lease is not None:
                lease.check()

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def continued_append(self, drive: TapeDrive) -> AppendHint | None:
        """The :class:`AppendHint` a backup may append at on ``drive`` (taken: one use), or None:
        not the same open drive, the drive elsewhere than where the last backup ended, or the
        medium's lease not held any more."""
        hint, self.append_hint = self.append_hint, None
        if hint is None or hint.drive is not drive or drive is not self.drive or not drive.writable:
            return None
        lease, leased = self.medium_lease, self.leases is not None and self.library is not None
        if leased and (lease is None or lease.resource != f"medium:{hint.label.medium_uuid}"):
            return None
        return hint if drive.position() == hint.position else None

    # ------------------------------------------------------------------ finding media

    def loaded_barcode(self) -> str | None:
        if self.changer is None or self.is_operator:
            return None
        try:
            st = self.changer.status()
        except TapearcError:
            return None
        bay = self.bay(st)
        return bay.barcode if bay is not None and bay.full else None

    def obtain(
        self, describe: str, accept: Callable[[LabelProbe], bool | str], prefer: list[str] | None = None
    ) -> TapeDrive:
        """Get a medium for which ``accept(probe)`` is True into the drive and return the drive.

        ``accept`` returns True, or a reason why the loaded medium is not the one wanted.
        ``prefer``: barcodes to try first.
        """
        d, why = self.loaded_if(accept)
        if d is not None:
            return d
        self.refuse_without_changer(describe, why)
        return self.change_medium(describe, accept, prefer, why)

    def loaded_if(self, accept: Callable[[LabelProbe], bool | str]) -> tuple[TapeDrive | None, str]:
        """The drive, when the medium in it now is accepted; else None and why not."""
        try:
            d = self.current()
            verdict = accept(probe_label(d))
            if verdict is True:
                return d, ""
            return None, f"the drive holds {verdict}"
        except MediumUnavailableError as e:
            return None, e.message

    def refuse_without_changer(self, describe: str, why: str) -> None:
        if not self.can_change:
            raise MediumUnavailableError(
                f"{describe} is needed but {why}, and no changer is configured",
                hint="give --changer (mtx:/dev/sgN, serial:PORT, sim:DIR or operator)",
            ).at(medium=self.spec)

    def change_medium(
        self, describe: str, accept: Callable[[LabelProbe], bool | str], prefer: list[str] | None, why: str
    ) -> TapeDrive:
        """The medium in the drive is not the one wanted (``why``): settle and close the drive,
        let go of its medium, then the operator or the changer's slots give an accepted one."""
        reasons = [why]
        self.close_drive()
        if not self.pinned:
            self.drop_medium()  # the medium that was in the drive goes back: its lease with it
        if self.is_operator:
            return self._from_operator(describe, accept)
        return self._from_slots(describe, accept, prefer, reasons)

    def _from_operator(self, describe: str, accept: Callable[[LabelProbe], bool | str]) -> TapeDrive:
        """Ask the operator for the medium until one is accepted (or the wait times out)."""

        def check() -> bool | str:
            try:
                d = self._open()
            except MediumUnavailableError as e:
                return e.message
            v = accept(probe_label(d))
            if v is True:
                self.drive = d
                return True
            d.close()
            return f"the drive holds {v}"

        from tapearc.media.changer import AttendedChanger

        assert isinstance(self.changer, AttendedChanger)  # is_operator
        self.changer.wait_for_medium(describe, check, timeout=self.operator_timeout)
        assert self.drive is not None
        return self.drive

    def _from_slots(
        self, describe: str, accept: Callable[[LabelProbe], bool | str], prefer: list[str] | None, reasons: list[str]
    ) -> TapeDrive:
        """:meth:`_try_slots` with the changer's lease held throughout (nobody else moves a
        medium between our inventory and our load)."""
        with self.changer_held(f"search for a medium for drive {self.drive_index}"):
            return self._try_slots(describe, accept, prefer, reasons)

    def _try_slots(
        self,
        describe: str,
        accept: Callable[[LabelProbe], bool | str],
        prefer: list[str] | None,
        reasons: list[str],
        again: bool = True,
    ) -> TapeDrive:
        """Load the changer's slots (``prefer``'s barcodes first) until a medium is accepted;
        with leases, then the media of other drives that nobody holds (``prefer``'s only)."""
        ch = self.changer
        assert ch is not None
        st = ch.status()
        bay = self.bay(st)
        if bay is not None and bay.full:
            ch.unload(self.drive_index)
            st = ch.status()
        order = [s for s in st.slots if s.full]
        if prefer:
            order.sort(key=lambda s: (s.barcode not in prefer, s.number))
        for s in order:
            ch.load(s.number, self.drive_index)
            try:
                d = self._open()
            except MediumUnavailableError as e:
                reasons.append(f"slot {s.number}: {e.message}")
                ch.unload(self.drive_index, s.number)
                continue
            probe = probe_label(d)
            verdict = accept(probe)
            if verdict is True:
                verdict = self._lease_loaded(probe)
            if verdict is True:
                self.drive = d
                return d
            reasons.append(f"slot {s.number} ({s.barcode or 'no barcode'}) holds {verdict}")
            d.close()
            ch.unload(self.drive_index, s.number)
        if again and prefer and self._from_other_drives(st, prefer, reasons):
            return self._try_slots(describe, accept, prefer, reasons, again=False)
        raise MediumUnavailableError(
            f"{describe} is needed and changer {ch.name} has none: " + "; ".join(reasons[-4:]),
            hint="load the medium into the changer, or a blank one",
        )

    def _lease_loaded(self, probe: LabelProbe) -> bool | str:
        """Lease the medium just loaded (not waiting: one held by another process is passed
        over); True, or why not."""
        from tapearc.errors import LeaseBusyError

        if probe.label is None:
            self.drop_medium()
            return True
        try:
            self.hold_medium(probe.label.medium_uuid, wait=0)
        except LeaseBusyError as e:
            return f"a medium another process holds ({e.message})"
        return True

    def _from_other_drives(self, st: ChangerStatus, prefer: list[str], reasons: list[str]) -> bool:
        """Put back into their slots the wanted media (``prefer``) that sit in other drives of the
        library whose leases are free; True if one was. A drive held by another process is not
        waited for (that process may be waiting for us): its holder is named in ``reasons``."""
        from tapearc.errors import LeaseBusyError

        if self.leases is None or self.library is None or self.changer is None:
            return False
        moved = False
        for bay in st.drives:
            if bay.number == self.drive_index or not bay.full or bay.barcode not in prefer:
                continue
            try:
                lease = self.leases.acquire(drive_resource(self.library, bay.number), purpose=self.purpose, wait=0)
            except LeaseBusyError as e:
                reasons.append(f"{bay.barcode} is in drive {bay.number}: {e.message}")
                continue
            with lease:
                self.changer.unload(bay.number)
            moved = True
        return moved

    def blank_for(self, set_uuid: uuid.UUID, sequence: int) -> TapeDrive:
        """A blank medium to become ``sequence`` of the set."""
        known: set[str] = set()
        if self.catalog is not None:
            known = set(self.catalog.known_labels())

        def accept(p: LabelProbe) -> bool | str:
            if p.blank:
                held = (
                    None
                    if self.catalog is None
                    else known_medium(self.catalog, self.spec, self.loaded_barcode(), by_place=False)
                )
                if held is None:
                    return True
                return f"a medium that reads as blank but for which the catalog holds {held}"
            if p.label is not None:
                return f"sequence {p.label.sequence} of media set {p.label.media_set_uuid}, not a blank medium"
            return f"a medium that is not tapearc's ({p.foreign})"

        prefer = self.unknown_barcodes(known)
        return self.obtain(f"a blank medium for sequence {sequence} of media set {set_uuid}", accept, prefer)

    def unknown_barcodes(self, known: set[str]) -> list[str] | None:
        """The barcodes in the changer's slots that are not in ``known`` (the catalog's labels):
        the slots to try first for a blank medium. None without a changer that reads barcodes,
        or when its inventory fails (every slot is then tried in order)."""
        if self.changer is None or self.is_operator:
            return None
        try:
            return [s.barcode for s in self.changer.status().slots if s.full and s.barcode and s.barcode not in known]
        except TapearcError:
            return None

    def medium(
        self, medium_uuid: uuid.UUID, set_uuid: uuid.UUID, sequence: int, barcode: str | None = None
    ) -> TapeDrive:
        """The given medium of a set."""

        def accept(p: LabelProbe) -> bool | str:
            if p.label is not None and p.label.medium_uuid == medium_uuid:
                return True
            if p.label is not None:
                return f"sequence {p.label.sequence} of media set {p.label.media_set_uuid}"
            return "a blank medium" if p.blank else f"a foreign medium ({p.foreign})"

        name = f"medium {barcode + ' ' if barcode else ''}(sequence {sequence} of media set {set_uuid})"
        self.hold_medium(medium_uuid)  # a medium another job writes or reads is waited for, not grabbed
        self.pinned = True
        try:
            return self.obtain(name, accept, [barcode] if barcode else None)
        finally:
            self.pinned = False

    def medium_by_sequence(self, set_uuid: uuid.UUID, sequence: int) -> TapeDrive:
        def accept(p: LabelProbe) -> bool | str:
            if p.label is not None and p.label.media_set_uuid == set_uuid and p.label.sequence == sequence:
                return True
            if p.label is not None:
                return f"sequence {p.label.sequence} of media set {p.label.media_set_uuid}"
            return "a blank medium" if p.blank else f"a foreign medium ({p.foreign})"

        return self.obtain(f"sequence {sequence} of media set {set_uuid}", accept)


def _quietly(step: Callable[[], None]) -> None:
    """A catalog write on the way out of a failure: its own failure leaves the row as it was
    (``writing``: not complete either), and the first error is the one reported."""
    try:
        step()
    except TapearcError as e:
        log.warning("%s", e)


def uses_leases(spec: str, changer_spec: str | None, catalog: Catalog | None) -> bool:
    """Whether a command's media are leased: with a catalog, for the drives of a library (a
    changer other than the operator, or ``sim:DIR`` of a simulated library). Other media (a
    single image, folder or st drive, a stream) keep the file locks of tapearc.locks."""
    if catalog is None:
        return False
    if changer_spec is not None:
        return changer_spec.strip().lower() != "operator"
    return library_dir(spec) is not None


def catalog_spec(catalog: Catalog) -> str:
    """How leases open the catalog ``catalog``: its path, or its URL with the password (never shown)."""
    return catalog.connect_spec


@contextmanager
def leased_media(
    spec: str,
    changer_spec: str | None,
    *,
    write: bool,
    catalog: Catalog,
    purpose: str,
    wait: float | None = None,
    drive: int | None = None,
) -> Iterator[MediaSource]:
    """The MediaSource of a command on a library, its drive leased for the whole command:
    ``sim:DIR`` alone takes any free drive of the simulated library (``drive``: that one); a
    ``--media`` with a ``--changer`` takes that drive: the changer's drive ``drive``
    (``--changer-drive``, checked against the changer's inventory), else N of
    ``sim:DIR/drive-N.tap``, else drive 0. Waits up to ``wait`` seconds (None: as long as it
    takes) for a drive, a medium or the changer that another process holds."""
    from tapearc.catalog.leases import Leases
    from tapearc.media.changers import open_changer

    leases = Leases(catalog_spec(catalog))
    try:
        if changer_spec is None and drive is None:
            src = MediaSource.for_free_drive(
                f"sim:{library_dir(spec)}", write=write, leases=leases, purpose=purpose, catalog=catalog, wait=wait
            )
        else:  # the drive asked for: of the changer, or of the simulated library of sim:DIR
            src = MediaSource(
                spec,
                write=write,
                changer=open_changer(changer_spec) if changer_spec is not None else None,
                catalog=catalog,
                operator_timeout=wait,
                leases=leases,
                purpose=purpose,
                drive_index=drive,
                check_drive=drive is not None,
            )
        try:
            yield src
        finally:
            src.close()
    finally:
        leases.close()
