"""Text renderers: one per engine result type, kept out of the command functions.

Each ``render_*`` prints a result the engine returned as the lines a person reads (``--json``
prints the result's ``to_json()`` instead, see :func:`tapearc.cli.common.emit_json`). The
engine types are imported for the type checker only: rendering never imports the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from tapearc.cli.common import out_console, say
from tapearc.units import format_size

if TYPE_CHECKING:
    from rich.table import Table

    from tapearc.engine.backup import BackupResult
    from tapearc.engine.compare import CompareResult
    from tapearc.engine.copy import CopyResult
    from tapearc.engine.listing import MediumListing, TapeFileListing
    from tapearc.engine.plan import Plan
    from tapearc.engine.restore import RestoreResult
    from tapearc.engine.scan import ScanResult
    from tapearc.engine.verify import FileReport, MediumReport, VerifyReport


def ranges(pairs: Iterable[Sequence[int]], limit: int | None = None) -> str:
    """Inclusive ranges as ``a-b`` (``a`` when a == b), comma separated, the first ``limit``."""
    items = list(pairs)
    shown = items if limit is None else items[:limit]
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in shown)


# ---------------------------------------------------------------- backup


def render_backup(source: str, res: BackupResult) -> None:
    speed = f", {res.volume_size / res.seconds / 1e6:.1f} MB/s" if res.seconds > 0 else ""
    base = f" on {res.base_generation}, {res.unchanged_blocks} blocks unchanged" if res.kind == "incremental" else ""
    spans = ""
    if len(res.parts) > 1:
        spans = "; spans media " + ", ".join(f"{p['medium']} (sequence {p['sequence']})" for p in res.parts)
    say(
        f"backed up {source} ({format_size(res.volume_size)}) to {res.medium} as volume {res.volume!r} "
        f"generation {res.generation} ({res.kind}{base}, tape file {res.tape_file}): {res.chunks} chunks, "
        f"{res.data_blocks} blocks stored, {res.zero_blocks} zero blocks, "
        f"{format_size(res.stored_bytes)} written, {format_size(res.source_bytes_read)} read from the source"
        f"{speed}{spans}"
    )
    if res.tracker_missed:
        n = sum(b - a + 1 for a, b in res.tracker_missed)
        say(
            f"the change tracker missed {n} changed blocks (read and stored anyway): blocks "
            f"{ranges(res.tracker_missed, 20)}" + (" ..." if len(res.tracker_missed) > 20 else "")
        )


# ---------------------------------------------------------------- restore and plan


def render_restore(res: RestoreResult, *, to_stderr: bool) -> None:
    rolled = {"roll-forward": "rolled forward", "rollback": "rolled back"}.get(str(res.mode), "rolled forward")
    say(
        f"restored volume {res.volume!r}"
        + (f" (source {res.source_path})" if res.source_path else "")
        + f" generation {res.generation} ({format_size(res.volume_size)}) "
        f"from {res.medium} to {res.target}"
        + (f" ({rolled} from generation {res.from_generation})" if res.from_generation is not None else "")
        + f": {res.chunks_read} chunks read, {res.blocks_written} blocks written ({res.bytes_written} bytes), "
        f"{res.blocks_zeroed} zeroed ({res.bytes_zeroed} bytes)",
        stderr=to_stderr,
    )


def render_restore_ranges(res: RestoreResult) -> None:
    """On stderr, one line per block range of the target that is not the requested generation's
    (from an older one, lost, on a medium that never arrived), and the damage seen."""
    bs, size = res.block_size, res.volume_size

    def span(a: int, b: int) -> str:
        return f"blocks {a}-{b} (bytes {a * bs}-{min((b + 1) * bs, size) - 1})"

    for g in res.skipped_generations:
        say(
            f"tapearc: generation {g['generation']} is {g['state']}: restored generation {res.generation}, not the newest",
            stderr=True,
        )
    for f in res.fallback:
        a, b = cast("Sequence[int]", f["blocks"])
        src = "zeros (their older version)" if f.get("zero") else f"generation {f['from_generation']}"
        say(f"tapearc: {span(a, b)}: damaged in generation {res.generation}, restored from {src}", stderr=True)
    for m in res.missing_media:
        for a, b in cast("list[Sequence[int]]", m["blocks"]):
            say(
                f"tapearc: {span(a, b)}: medium {m['barcode'] or m['medium']} (sequence {m['sequence']}) never arrived, zeros",
                stderr=True,
            )
    for d in res.damaged_chunks:
        say(f"tapearc: damaged: {d['error']}", stderr=True)


def render_plan(p: Plan, *, chunks: bool, labels: Mapping[UUID, str] | None = None) -> None:
    """The plan in text; media by label (barcode), by short UUID when they have none."""
    from tapearc.catalog.views import short_uuid  # (not at import: `backup` does not need the views)

    d: dict[str, Any] = p.to_json(with_chunks=chunks)
    rolling = ""
    if p.from_generation is not None:
        rolling = (
            f", rolling generation {p.from_generation} {'back' if p.from_generation > p.generation else 'forward'}"
        )
    say(
        f"restore volume {p.volume!r}"
        + (f" (source {p.source_path})" if p.source_path else "")
        + f" generation {p.generation} ({format_size(p.volume_size)}) from chain "
        + " -> ".join(str(x) for x in p.chain)
        + rolling
    )
    if p.encrypted:
        say(
            "  encrypted"
            + (f" with key {p.key_fingerprint}" if p.key_fingerprint else "")
            + ": the restore needs the key (--key FILE)"
        )
    for i, m in enumerate(p.media, 1):
        say(f"  medium {i}: {(labels or {}).get(m[0]) or short_uuid(m[0])} (sequence {m[1]})")
    for f in d["tape_files"]:
        say(
            f"  tape file {f['tape_file']} (generation {f['generation']}): {f['chunks_to_read']} chunks, "
            f"{format_size(int(f['bytes_to_read']))}"
        )
    say(
        f"  read {len(p.reads)} of {p.chunks_in_chain} chunks: {format_size(p.bytes_to_read)} to read, "
        f"{format_size(p.bytes_to_skip)} to skip; {p.blocks_to_write} blocks to write, {p.blocks_to_zero} to zero"
    )
    if chunks:
        for c in d["chunks"]:
            say(
                f"    file {c['tape_file']} @{c['logical']}: generation {c['generation']} chunk {c['seq']}"
                + (" (encrypted)" if c["encrypted"] else "")
                + ", blocks "
                + ", ".join(f"{a}-{a + n - 1}" if n > 1 else f"{a}" for a, n in c["blocks"])
            )


# ---------------------------------------------------------------- list


def _file_state(f: TapeFileListing) -> str:
    state = "complete" if f.complete else ("incomplete" if f.trailer else "no trailer")
    if f.kind != "generation":
        state = f.kind  # interrupted, damaged, foreign or empty (engine.tapefiles)
    elif not f.closed:
        state = "interrupted"
    elif f.problem:
        state = "damaged"
    return state


def _listing_table(listing: MediumListing) -> Table:
    from rich.table import Table

    table = Table(show_edge=False)
    cols = ("file", "content", "volume", "gen", "size", "blocks", "zero", "stored", "chunks", "records", "state")
    for col in cols:
        table.add_column(col, justify="right" if col not in ("content", "volume", "state") else "left")
    for f in listing.files:
        if f.kind == "label":
            table.add_row(str(f.tape_file), "label", "", "", "", "", "", "", "", str(f.records), "ok")
            continue
        table.add_row(
            str(f.tape_file),
            f"{f.generation_kind or f.kind}"
            + (f" {f.compression}" if f.compression == "zstd" else "")
            + (" encrypted" if f.encrypted else ""),
            f.volume or "",
            str(f.generation or ""),
            format_size(f.volume_size or 0),
            str(f.data_blocks),
            str(f.zero_blocks),
            format_size(f.stored_bytes),
            str(len(f.chunks)),
            str(f.records),
            _file_state(f),
        )
    return table


def _listing_chains(listing: MediumListing) -> None:
    for vol, chain in listing.chains().items():
        parts = []
        for g in chain:
            k = "F" if g["kind"] == "full" else f"+{g['base']}"
            parts.append(
                f"{g['generation']}({k}, {g['changed_blocks']} blocks{'' if g['complete'] else ', incomplete'})"
            )
        src = next((str(g["source_path"]) for g in reversed(chain) if g.get("source_path")), None)
        fps = sorted({str(g["key_fingerprint"]) for g in chain if g.get("key_fingerprint")})
        say(
            f"volume {vol}: generations "
            + " -> ".join(parts)
            + (f"; source {src}" if src else "")
            + (f"; encrypted with key {', '.join(fps)}" if fps else "")
        )


def _listing_chunks(f: TapeFileListing) -> None:
    for c in f.chunks:
        runs = ", ".join(
            (f"{a}" if n == 1 else f"{a}-{a + n - 1}") + (" zero" if k == "zero" else "") for a, n, k in c.runs
        )
        say(
            f"  file {f.tape_file} chunk {c.seq}: records {c.record}-{c.record + c.record_count - 1}, "
            f"{format_size(c.stored_bytes)}{' zstd' if c.compressed else ''}{' encrypted' if c.encrypted else ''}: "
            f"blocks {runs}"
        )


def render_listing(listing: MediumListing, *, chunks: bool) -> None:
    lab = listing.label
    say(
        f"medium {listing.medium}: tapearc label, set {lab.media_set_uuid} sequence {lab.sequence}, "
        f"medium {lab.medium_uuid}, record size {format_size(lab.record_size)}"
        + (f", encrypted media set (key {listing.key_fingerprint})" if listing.key_fingerprint else "")
    )
    if listing.key_record_problem:
        say(listing.key_record_problem)
    out_console.print(_listing_table(listing))
    _listing_chains(listing)
    for f in listing.files:
        if f.problem:
            say(f"tape file {f.tape_file}: {f.problem}")
        if chunks and f.kind == "generation":
            _listing_chunks(f)


# ---------------------------------------------------------------- verify


def _verify_file(f: FileReport) -> None:
    if f.volume:
        what = f"volume {f.volume!r} generation {f.generation}" + (f" part {f.part}" if f.part else "")
    else:
        what = f"{f.kind} tape file" if f.kind != "generation" else "?"
    if f.key_fingerprint is not None:
        what += f", encrypted with key {f.key_fingerprint}"
    if f.ok:
        tags = (
            f", {f.tags_unchecked} tags not checked (no key)"
            if f.tags_unchecked
            else (f", {f.tags_checked} tags checked" if f.tags_checked else "")
        )
        say(f"  tape file {f.tape_file} ({what}): OK, {f.chunks_ok} chunks{tags}, {format_size(f.bytes)}")
        return
    say(f"  tape file {f.tape_file} ({what}): DAMAGED")
    for p in f.problems:
        blocks = ranges(p.blocks)
        say(
            f"    record {p.record}"
            + (f", chunk {p.chunk}" if p.chunk is not None else "")
            + (f", blocks {blocks}" if blocks else "")
            + f": {p.message}"
        )


def _verify_medium(m: MediumReport) -> None:
    say(
        f"medium {m.medium}"
        + (f" (sequence {m.sequence} of media set {m.media_set})" if m.media_set else "")
        + (f", encrypted set (key {m.key_fingerprint})" if m.key_fingerprint else "")
        + (": OK" if m.ok else ": DAMAGED")
    )
    for p in m.problems:
        say(f"  {p.message}")
    for f in m.files:
        _verify_file(f)


def render_against(a: dict[str, Any]) -> None:
    if a["equal"]:
        say(f"generation {a['generation']} equals {a['source']}")
        return
    say(
        f"generation {a['generation']} differs from {a['source']}: {a['differing_blocks']} blocks "
        f"({ranges(a['differing_ranges'], 20)})"
        + (f"; sizes {a['volume_size']} vs {a['source_size']}" if a["volume_size"] != a["source_size"] else "")
    )


def render_verify(rep: VerifyReport) -> None:
    for m in rep.media:
        _verify_medium(m)
    for vol, gens in rep.affected.items():
        if gens:
            say(f"damage affects volume {vol!r} generations {', '.join(map(str, gens))}")
    unchecked = sum(f.tags_unchecked for m in rep.media for f in m.files)
    if unchecked:
        say(
            f"{unchecked} encrypted chunk{'s' if unchecked != 1 else ''}: CRCs checked, tags and block digests "
            f"not checked (no key; key {', '.join(rep.keys_not_given)}: give it with --key FILE)"
        )
    if rep.against is not None:
        render_against(rep.against)
    if rep.image is not None:
        say(f"image: {rep.image.get('summary', rep.image)}")
    if rep.source_differs:
        say("verify: medium OK; the source differs from the backup on it")
    else:
        say(f"verify: OK{_ok_scope(rep)}" if rep.ok else "verify: DAMAGE FOUND")


def _ok_scope(rep: VerifyReport) -> str:
    """What an OK covers when it is less than every tape file's every check: a medium holding
    nothing after its label (only the label was checked), encrypted chunks read without the key
    (their CRCs checked, not their tags)."""
    files = sum(len(m.files) for m in rep.media)
    unchecked = sum(f.tags_unchecked for m in rep.media for f in m.files)
    if not files:
        return " (only the label: the medium holds no tape file after it, nothing else was checked)"
    if unchecked:
        return f" (CRCs only for {unchecked} encrypted chunk{'s' if unchecked != 1 else ''}: not authenticated without the key)"
    return ""


# ---------------------------------------------------------------- scan and label


def render_scan(res: ScanResult) -> None:
    say(
        f"scanned {res.medium}: medium {res.medium_uuid}, sequence {res.sequence} of media set {res.media_set}"
        + (f", encrypted (key {res.key_fingerprint})" if res.key_fingerprint else "")
    )
    for f in res.files:
        enc = f" (encrypted with key {f.key_fingerprint})" if f.key_fingerprint else ""
        say(
            f"  tape file {f.tape_file}: volume {f.volume!r} generation {f.generation}{enc}: {f.state}, "
            f"{f.chunks} chunks (from {f.method})" + (f"; {f.problem}" if f.problem else "")
        )
    for d in res.tape_files:
        if d["kind"] != "generation":
            say(
                f"  tape file {d['tape_file']}: {'interrupted' if d['interrupted'] else d['kind']}"
                + (f"; {d['problem']}" if d["problem"] else "")
            )
    for w in res.warnings:
        say(f"tapearc: warning: {w}", stderr=True)


def render_label(out: dict[str, Any]) -> None:
    say(
        f"labeled {out['medium']}: medium {out['medium_uuid']}, sequence {out['sequence']} of media set {out['media_set']}"
        + (f", text {out['text']!r}" if out["text"] else "")
    )


# ---------------------------------------------------------------- copy and compare


def render_copy(res: CopyResult, *, to_stderr: bool) -> None:
    speed = f", {res.bytes / res.seconds / 1e6:.1f} MB/s" if res.seconds > 0 else ""
    say(f"copied {res.source} to {res.target}: {res.summary()} ({format_size(res.bytes)}{speed})", stderr=to_stderr)
    if res.label is not None:
        lab = res.label
        say(
            f"  tapearc medium {lab['medium_uuid']}, sequence {lab['sequence']} of media set {lab['media_set']}"
            + (f", text {lab['text']!r}" if lab["text"] else "")
            + "; the copy carries the same label (use it instead of the original, not beside it)",
            stderr=to_stderr,
        )
        if "key_fingerprint" in lab:
            say(
                f"  encrypted media set (key {lab['key_fingerprint'] or 'record damaged'}): copied sealed as it is, "
                "with its key record; the copy opens with the same key",
                stderr=to_stderr,
            )
    for w in res.warnings:
        say(f"  warning: {w}", stderr=to_stderr)


def render_compare_differences(res: CompareResult) -> None:
    """The differences after the first (which the error line names)."""
    for d in res.divergences[1:]:
        extra = f" (x{d.count})" if d.count > 1 else ""
        say(f"  {d.kind}{extra}: {d.detail}")
    if res.divergence_count > len(res.divergences):
        say(f"  ... {res.divergence_count - len(res.divergences)} more differences")


# ---------------------------------------------------------------- drive status


def _drive_position(info: dict[str, Any]) -> None:
    st = info.get("st")
    if st is not None:
        say(
            f"  file number {st['file_number']}, block number {st['block_number']}, "
            f"position (MTIOCPOS) {st['position']}, partition {st['partition']}"
        )
        say(f"  status bits: {' '.join(st['flags']) or '-'} ({st['gstat']})")
        bs = st["block_size"]
        say(
            f"  block size {bs}{' (variable)' if bs == 0 else ''}, density {st['density']}, "
            f"soft errors {st['soft_errors']}, max record {format_size(info['max_record_size'])}"
        )
        if st.get("note"):
            say(f"  note: {st['note']}")
        return
    pos = info["position"]
    say(f"  position {pos['logical']} (tape file {pos['file']}, record {pos['record']})")
    flags = [k for k in ("at_bot", "at_eod", "early_warning") if info.get(k)]
    say(
        f"  {' '.join(f.replace('_', ' ') for f in flags) or 'mid-tape'}; max record {format_size(info['max_record_size'])}"
    )
    if info.get("capacity"):
        say(f"  used {format_size(info.get('used') or 0)} of {format_size(info['capacity'])}")


_LABEL_STATES = {
    "blank": "  blank tape (no volume label)",
    "foreign": "  not a tapearc medium",
    "damaged": "  damaged tapearc medium (its volume label cannot be read)",
}


def render_drive_status(info: dict[str, Any]) -> None:
    if not info.get("tape"):
        say(f"drive {info['medium']}: no tape")
        return
    wp = "write-protected" if info.get("write_protected") else "writable"
    if info.get("write_protected") and (info.get("details") or {}).get("not_writable"):
        wp = f"not writable ({info['details']['not_writable']})"
    say(f"drive {info['medium']}: tape loaded, {wp}")
    _drive_position(info)
    state = info.get("state")
    if state == "tapearc":
        lab = info["label"]
        say(
            f"  tapearc label: medium {lab['medium_uuid']}, media set {lab['media_set_uuid']}, "
            f"sequence {lab['sequence']}, record size {format_size(lab['record_size'])}"
            + (f", label {lab['text']!r}" if lab.get("text") else "")
        )
    elif state in _LABEL_STATES:
        say(_LABEL_STATES[str(state)])
    if info.get("label_note"):
        say(f"  ({info['label_note']})")
