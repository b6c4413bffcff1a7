"""The ``tapesim`` command: simulated tapes (make, inspect, write-protect) and autoloaders.

    tapesim new IMAGE --capacity SIZE [--early-warning SIZE] [--max-record SIZE]
                      [--write-protected] [--barcode TEXT] [--rate RATE] [--buffer SIZE] [--force]
    tapesim info IMAGE [--json] [--objects] [--format simh|aws|tgt]
    tapesim convert SRC DST [--from simh|aws|tgt] [--to simh|aws|tgt] [--barcode TEXT]
                    [--capacity SIZE] [--force]
    tapesim protect IMAGE --on|--off
    tapesim fault IMAGE add KIND [--at P] [--after N] [--count C] [--length L] [--offset X]
    tapesim fault IMAGE list [--json]
    tapesim fault IMAGE clear [KIND]
    tapesim library DIR --slots N --capacity SIZE [--drives D] [--early-warning SIZE]
                        [--max-record SIZE] [--barcode-prefix P] [--rate RATE] [--buffer SIZE] [--force]
    tapesim library-status DIR [--json]
    tapesim load DIR SLOT [--drive I]
    tapesim unload DIR [--drive I] [--slot K]
    tapesim autoloader DIR (--pty | --listen HOST:PORT) [--verbose]

SIZE is a byte count with an optional binary suffix: ``64K``, ``1M``, ``10MiB``, ``2G``, ``1T``.
RATE is bytes per second with an optional decimal suffix as drive data sheets give it
(``400M`` = ``400MB/s`` = 400,000,000; ``300MiB/s`` is binary); 0 = unlimited (the default).
Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import typer

from .drive import create_image
from .faults import FAULT_KINDS, FaultError, add_fault, clear_faults, describe_fault, load_faults
from .formats import FORMATS, TapeFormatError, guess_format, scan_image
from .formats import convert as convert_image
from .formats import tgt as tgt_format
from .library import Library, LibraryError, LibraryStatus, create_library
from .sidecar import (
    DEFAULT_MAX_RECORD,
    EnvironmentValueError,
    SidecarError,
    TapeSettings,
    early_writeback_enabled,
    load_settings,
    save_settings,
    sidecar_path,
)
from .simh import ObjKind, ScanResult, SimhFormatError, scan

app = typer.Typer(
    name="tapesim",
    help="Tape hardware simulator: SIMH .tap images driven like the Linux st driver.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class CliError(Exception):
    """An error reported as one line and exit status 1."""


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """Parse ``64K``, ``1M``, ``10MiB``, ``2G``, ``123`` (binary multiples: K = 1024)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise CliError(f"invalid size {text!r} (expected e.g. 65536, 64K, 10MiB, 2G)")
    return int(m.group(1)) * _MULT[(m.group(2) or "").lower()]


_RATE_RE = re.compile(r"^\s*(\d+)\s*(?:([kmgt])(i)?)?\s*(?:b)?\s*(?:/s)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> int:
    """Parse a transfer rate in bytes/s: ``400M``, ``400MB/s`` (decimal: 400,000,000),
    ``300MiB/s`` (binary), ``0`` (unlimited)."""
    m = _RATE_RE.match(text)
    if not m:
        raise CliError(f"invalid rate {text!r} (expected bytes per second, e.g. 400M or 400MB/s; 0 = unlimited)")
    unit = (m.group(2) or "").lower()
    base = 1024 if m.group(3) else 1000
    return int(m.group(1)) * int(base ** " kmgt".index(unit or " "))


def format_rate(n: int) -> str:
    """A rate in bytes/s as data sheets give it (decimal MB/s); 0 is unlimited."""
    if not n:
        return "unlimited"
    return f"{n / 1e6:g} MB/s"


def format_size(n: int) -> str:
    """``n`` bytes in a short human form (binary units)."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}" if value != int(value) else f"{int(value)} {unit}"
    raise AssertionError("unreachable")


def runs_of(lengths: list[int]) -> list[tuple[int, int]]:
    """Compress record sizes into runs: ``[(count, length), ...]``."""
    runs: list[tuple[int, int]] = []
    for n in lengths:
        if runs and runs[-1][1] == n:
            runs[-1] = (runs[-1][0] + 1, n)
        else:
            runs.append((1, n))
    return runs


def runs_text(runs: list[tuple[int, int]]) -> str:
    return ", ".join(f"{c} x {n}" for c, n in runs)


# ---------------------------------------------------------------- info


def _file_entry(number: int, lengths: list[int], first: int, filemark: bool) -> dict[str, Any]:
    """The ``files`` entry of ``tapesim info --json`` for one tape file."""
    runs = runs_of(lengths)
    return {
        "number": number,
        "records": len(lengths),
        "runs": [{"count": c, "length": n} for c, n in runs],
        "record_sizes": [[n, c] for c, n in runs],  # [size, count] pairs
        "runs_text": runs_text(runs),
        "bytes": sum(lengths),
        "filemark": filemark,
        "first_object": first,
    }


def _walk_objects(
    scan_result: ScanResult,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``files``, ``objects`` and ``error_records`` of ``tapesim info --json``."""
    files: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    error_records: list[dict[str, Any]] = []
    cur_lengths: list[int] = []
    cur_first = 0
    fileno = 0
    for i, o in enumerate(scan_result.objects):
        if o.kind is ObjKind.FILEMARK:
            objects.append(
                {
                    "position": i,
                    "kind": "filemark",
                    "offset": o.offset,
                    "length": 0,
                    "error": False,
                    "file": fileno,
                    "record": None,
                }
            )
            files.append(_file_entry(fileno, cur_lengths, cur_first, True))
            fileno += 1
            cur_lengths = []
            cur_first = i + 1
            continue
        rec = len(cur_lengths)
        objects.append(
            {
                "position": i,
                "kind": "record",
                "offset": o.offset,
                "length": o.length,
                "error": o.error,
                "file": fileno,
                "record": rec,
            }
        )
        if o.error:
            error_records.append({"position": i, "file": fileno, "record": rec, "offset": o.offset, "length": o.length})
        cur_lengths.append(o.length)
    if cur_lengths:
        files.append(_file_entry(fileno, cur_lengths, cur_first, False))
    return files, objects, error_records


def describe_image(path: str, scan_result: ScanResult, settings: TapeSettings, has_sidecar: bool) -> dict[str, Any]:
    """The JSON report of ``tapesim info``."""
    files, objects, error_records = _walk_objects(scan_result)
    n_fm = sum(1 for o in scan_result.objects if o.kind is ObjKind.FILEMARK)
    return {
        "image": path,
        "sidecar": has_sidecar,
        "settings": settings.to_json(),
        "capacity": settings.capacity,
        "early_warning": settings.early_warning,
        "max_record": settings.max_record,
        "write_protected": settings.write_protected,
        "barcode": settings.barcode,
        "rate": settings.rate,
        "buffer": settings.buffer if settings.rate else None,
        "used": scan_result.end_offset,
        "file_size": scan_result.file_size,
        "object_count": len(scan_result.objects),
        "record_count": len(scan_result.objects) - n_fm,
        "filemark_count": n_fm,
        "data_bytes": sum(o.length for o in scan_result.objects),
        "files": files,
        "objects": objects,
        "eom_marker": scan_result.eom_marker,
        "truncated": scan_result.truncated,
        "damage": (
            {"offset": scan_result.damage_offset, "reason": scan_result.damage} if scan_result.truncated else None
        ),
        "error_records": error_records,
    }


def _cartridge_line(rep: dict[str, Any]) -> str:
    """The second line of ``tapesim info``: the cartridge's settings, by image format."""
    s = rep["settings"]
    fmt = rep.get("format", "simh")
    if fmt == "simh":
        return (
            f"cartridge: capacity {format_size(s['capacity'])}, early warning "
            f"{format_size(s['early_warning'])}, max record {format_size(s['max_record'])}, "
            f"write-protected {'yes' if s['write_protected'] else 'no'}, "
            f"barcode {s['barcode'] if s['barcode'] is not None else '-'}, rate {format_rate(s.get('rate', 0))}"
            + (f" (buffer {format_size(s['buffer'])})" if s.get("rate") else "")
            + ("" if rep["sidecar"] else " (no sidecar: defaults)")
        )
    if fmt == "tgt":
        return (
            f"format: tgt SSC tape file; MAM: capacity {format_size(rep['capacity'])}, "
            f"barcode {rep['barcode'] if rep['barcode'] is not None else '-'}"
        )
    return f"format: {fmt.upper()} (no capacity or barcode in the image)"


def _object_lines(rep: dict[str, Any]) -> list[str]:
    """``tapesim info --objects``: one line per object."""
    lines: list[str] = []
    for o in rep["objects"]:
        if o["kind"] == "filemark":
            lines.append(f"  obj {o['position']} @ {o['offset']}: filemark")
        else:
            err = " ERROR" if o["error"] else ""
            lines.append(
                f"  obj {o['position']} @ {o['offset']}: record {o['file']}/{o['record']}, {o['length']} bytes{err}"
            )
    return lines


def _usage_line(rep: dict[str, Any]) -> str:
    cap = rep["capacity"]
    if cap is None:
        used = f"used {rep['used']} bytes"
    else:
        pct = 100.0 * rep["used"] / cap if cap else 0.0
        used = f"used {rep['used']} of {cap} bytes ({pct:.1f}%)"
    return f"{used}; end of data at object {rep['object_count']}" + (" (EOM marker)" if rep["eom_marker"] else "")


def _damage_lines(rep: dict[str, Any]) -> list[str]:
    damage: list[str] = []
    if rep["damage"]:
        d = rep["damage"]
        damage.append(
            f"truncated tail at offset {d['offset']}: {d['reason']} "
            f"(the {rep['object_count']} objects before it are intact)"
        )
    for e in rep["error_records"]:
        damage.append(
            f"error-flagged record at object {e['position']} (file {e['file']} record "
            f"{e['record']}, offset {e['offset']}, {e['length']} bytes)"
        )
    if damage:
        return [f"damage: {d}" for d in damage]
    return ["damage: none"]


def render_info(rep: dict[str, Any], *, list_objects: bool) -> str:
    """The text report of ``tapesim info`` from its JSON report ``rep``."""
    lines = [
        f"{rep['image']}: {rep['record_count']} records, {rep['filemark_count']} filemarks "
        f"in {len(rep['files'])} tape files",
        _cartridge_line(rep),
    ]
    for f in rep["files"]:
        recs = f"{f['records']} record{'s' if f['records'] != 1 else ''}"
        runs = f" ({f['runs_text']})" if f["runs_text"] else ""
        mark = "filemark" if f["filemark"] else "no filemark"
        lines.append(f"file {f['number']}: {recs}{runs}, {f['bytes']} bytes, {mark}")
    if list_objects:
        lines.extend(_object_lines(rep))
    lines.append(_usage_line(rep))
    lines.extend(_damage_lines(rep))
    for f in rep.get("faults") or []:
        lines.append(f"fault: {describe_fault(f)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- commands


_RATE_HELP = (
    "The drive's native transfer rate in bytes/s, decimal suffixes as data sheets give them "
    "(LTO-9 400M, LTO-8 360M, LTO-7 300M); 0 = unlimited (the default)."
)
_BUFFER_DEFAULT = "1G"
_BUFFER_HELP = "The drive's buffer with --rate (default 1G, about an LTO-7..9 drive's)."


@app.command()
def new(
    image: str = typer.Argument(..., help="Path of the image file to create."),
    capacity: str = typer.Option(..., "--capacity", help="Capacity in bytes of image (e.g. 10M, 2G)."),
    early_warning: str | None = typer.Option(
        None, "--early-warning", help="Size of the early-warning zone (default min(capacity/8, 4G))."
    ),
    max_record: str = typer.Option(
        str(DEFAULT_MAX_RECORD), "--max-record", help="Drive's maximum record size (READ BLOCK LIMITS)."
    ),
    write_protected: bool = typer.Option(False, "--write-protected", help="Set the write-protect tab."),
    barcode: str | None = typer.Option(None, "--barcode", help="Barcode label of the cartridge."),
    rate: str = typer.Option("0", "--rate", help=_RATE_HELP),
    buffer: str = typer.Option(_BUFFER_DEFAULT, "--buffer", help=_BUFFER_HELP),
    force: bool = typer.Option(False, "--force", help="Erase an existing image."),
) -> None:
    """Make a blank tape: an empty SIMH image plus its settings sidecar."""
    rt, buf = parse_rate(rate), parse_size(buffer)
    cap = parse_size(capacity)
    ew = parse_size(early_warning) if early_warning is not None else None
    mr = parse_size(max_record)
    if os.path.exists(image) and not force:
        raise CliError(f"{image} already exists (use --force to erase it)")
    if os.path.isdir(image):
        raise CliError(f"{image} is a directory")
    try:
        TapeSettings(
            capacity=cap,
            early_warning=ew,
            max_record=mr,
            write_protected=write_protected,
            barcode=barcode,
            rate=rt,
            buffer=buf,
        )
    except SidecarError as e:
        raise CliError(str(e)) from None
    settings = create_image(
        image,
        capacity=cap,
        early_warning=ew,
        max_record=mr,
        write_protected=write_protected,
        barcode=barcode,
        overwrite=True,
        rate=rt,
        buffer=buf,
    )
    typer.echo(
        f"{image}: blank tape, capacity {format_size(settings.capacity)}, early warning "
        f"{format_size(settings.early_warning or 0)}, max record {format_size(settings.max_record)}"
        + (", write-protected" if settings.write_protected else "")
        + (f", rate {format_rate(rt)} (buffer {format_size(buf)})" if rt else "")
    )


_FORMAT_HELP = "Image format: " + ", ".join(FORMATS) + " (default: from the suffix)."


def _check_format(name: str | None, option: str) -> str | None:
    if name is not None and name not in FORMATS:
        raise CliError(f"invalid {option} {name!r} (expected one of: {', '.join(FORMATS)})")
    return name


@app.command()
def info(
    image: str = typer.Argument(..., help="Path of the image file."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (objects included)."),
    list_objects: bool = typer.Option(False, "--objects", help="Also list every object (text output)."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        metavar="simh|aws|tgt",
        help="Image format (default: from the suffix, .aws/.het aws, .tgt/.ssc tgt, else simh).",
    ),
) -> None:
    """List the tape files and records of an image, its usage and any damage."""
    fmt = _check_format(fmt, "--format") or guess_format(image) or "simh"
    if not os.path.exists(image):
        raise CliError(f"{image}: no such image")
    if os.path.isdir(image):
        raise CliError(f"{image} is a directory")
    if fmt == "simh":
        settings = load_settings(image)
        has_sidecar = os.path.exists(sidecar_path(image))
        rep = describe_image(image, scan(image), settings, has_sidecar)
        rep["format"] = "simh"
        rep["faults"] = load_faults(image)
    else:
        rep = describe_image(image, scan_image(image, fmt), TapeSettings(), False)
        rep["format"] = fmt
        rep["sidecar"] = False
        if fmt == "tgt":
            mam = tgt_format.read_info(image)
            tgt_settings = TapeSettings(capacity=max(mam.max_capacity, 1), barcode=mam.barcode)
            rep["settings"] = tgt_settings.to_json()
            rep.update(
                capacity=mam.max_capacity,
                early_warning=tgt_settings.early_warning,
                barcode=mam.barcode,
                serial=mam.serial,
            )
        else:
            rep["settings"] = None
            rep.update(capacity=None, early_warning=None, max_record=None, barcode=None)
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
    else:
        typer.echo(render_info(rep, list_objects=list_objects))


@app.command()
def convert(
    src: str = typer.Argument(..., help="Image to read."),
    dst: str = typer.Argument(..., help="Image to write (must not exist, unless --force)."),
    src_format: str | None = typer.Option(None, "--from", metavar="simh|aws|tgt", help=_FORMAT_HELP),
    dst_format: str | None = typer.Option(None, "--to", metavar="simh|aws|tgt", help=_FORMAT_HELP),
    barcode: str | None = typer.Option(
        None, "--barcode", help="Label: tgt MAM, or the SIMH sidecar (default: the source's; tgt: else DST's name)."
    ),
    capacity: str | None = typer.Option(
        None,
        "--capacity",
        help="tgt MAM max_capacity, or the SIMH sidecar's (tgt default: the image size rounded up to a MiB).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing DST."),
) -> None:
    """Copy a tape image into another format, records and filemarks unchanged.

    Formats: simh (.tap), aws (.aws; .het read too), tgt (.tgt/.ssc, tgtimg's SSC file).
    """
    _check_format(src_format, "--from")
    _check_format(dst_format, "--to")
    cap = parse_size(capacity) if capacity is not None else None
    if cap is not None and cap < 1:
        raise CliError("--capacity must be positive")
    if src_format is None and guess_format(src) is None:
        raise CliError(f"cannot tell the format of {src} from its suffix: give --from simh|aws|tgt")
    if dst_format is None and guess_format(dst) is None:
        raise CliError(f"cannot tell the format of {dst} from its suffix: give --to simh|aws|tgt")
    if not os.path.exists(src):
        raise CliError(f"{src}: no such image")
    res = convert_image(
        src, dst, src_format=src_format, dst_format=dst_format, barcode=barcode, capacity=cap, overwrite=force
    )
    extra = ""
    if res.dst_format == "tgt":
        extra = f", capacity {format_size(res.capacity or 0)}, barcode {res.barcode}"
    elif res.barcode is not None or res.capacity is not None:
        extra = (
            f", sidecar: capacity {format_size(res.capacity) if res.capacity else 'default'}, "
            f"barcode {res.barcode or '-'}"
        )
    typer.echo(
        f"{src} ({res.src_format}) -> {dst} ({res.dst_format}): {res.records} record"
        f"{'s' if res.records != 1 else ''}, {res.filemarks} filemark{'s' if res.filemarks != 1 else ''}, "
        f"{res.data_bytes} bytes of data; image {res.image_bytes} bytes{extra}"
    )


@app.command()
def protect(
    image: str = typer.Argument(..., help="Path of the image file."),
    on: bool = typer.Option(..., "--on/--off", help="Set or clear the write-protect tab."),
) -> None:
    """Set or clear the cartridge's write protection (in the sidecar)."""
    if not os.path.exists(image):
        raise CliError(f"{image}: no such image")
    settings = load_settings(image)
    settings.write_protected = on
    save_settings(image, settings)
    typer.echo(f"{image}: write protection {'on' if on else 'off'}")


_FAULT_ACTIONS = ("add", "list", "clear")


@app.command("fault")
def fault_cmd(
    image: str = typer.Argument(..., help="Path of the SIMH image (its sidecar holds the faults)."),
    action: str = typer.Argument(..., metavar="add|list|clear", help="What to do."),
    kind: str | None = typer.Argument(
        None, metavar="[KIND]", help="add: the fault kind (" + ", ".join(FAULT_KINDS) + "); clear: only this kind."
    ),
    at: int | None = typer.Option(None, "--at", help="Logical object position P."),
    after: int | None = typer.Option(None, "--after", help="power_cut: after N records written in a session."),
    count: int | None = typer.Option(None, "--count", help="unreadable/write_error: C consecutive objects (1)."),
    length: int | None = typer.Option(None, "--length", help="short_read: bytes returned."),
    offset: str | None = typer.Option(
        None, "--offset", help="early_eom: image byte offset where the medium ends (SIZE)."
    ),
    as_json: bool = typer.Option(False, "--json", help="list: print the faults as JSON."),
) -> None:
    """Inject faults into a cartridge: add one, list them, clear them (see tapesim.faults).

    unreadable --at P [--count C]; short_read --at P --length L; write_error --at P [--count C];
    power_cut --after N | --at P (one-shot); early_eom --offset X.
    """
    if action not in _FAULT_ACTIONS:
        raise CliError(f"invalid action {action!r} (expected one of: {', '.join(_FAULT_ACTIONS)})")
    if not os.path.exists(image):
        raise CliError(f"{image}: no such image")
    options = {
        "at": at,
        "after": after,
        "count": count,
        "length": length,
        "offset": parse_size(offset) if offset is not None else None,
    }
    given = [f"--{k}" for k, v in options.items() if v is not None]
    if action != "add" and given:
        raise CliError(f"{' '.join(given)}: only with 'add'")
    if action == "add":
        if kind is None:
            raise CliError(f"add: give the fault kind ({', '.join(FAULT_KINDS)})")
        try:
            fault = add_fault(image, kind, **options)
        except FaultError as e:
            raise CliError(str(e)) from None
        typer.echo(f"{image}: added {describe_fault(fault)}")
    elif action == "list":
        if kind is not None:
            raise CliError("list takes no KIND")
        faults = load_faults(image)
        if as_json:
            typer.echo(json.dumps(faults, indent=2))
        elif not faults:
            typer.echo(f"{image}: no faults")
        else:
            for i, f in enumerate(faults):
                typer.echo(f"{i}: {describe_fault(f)}")
    else:
        try:
            n = clear_faults(image, kind)
        except FaultError as e:
            raise CliError(str(e)) from None
        typer.echo(f"{image}: removed {n} fault{'s' if n != 1 else ''}")


# ---------------------------------------------------------------- library (autoloader)


def _open_library(path: str) -> Library:
    if not os.path.isdir(path):
        raise CliError(f"{path}: no such library folder")
    return Library(path)


def status_json(st: LibraryStatus) -> dict[str, Any]:
    return {
        "slots": [{"number": s.number, "barcode": s.barcode} for s in st.slots],
        "drives": [{"number": d.number, "barcode": d.barcode, "source_slot": d.source_slot} for d in st.drives],
    }


def render_status(path: str, st: LibraryStatus) -> str:
    lines = [f"{path}: {len(st.slots)} slots, {len(st.drives)} drive{'s' if len(st.drives) != 1 else ''}"]
    for s in st.slots:
        lines.append(f"slot {s.number}: {s.barcode or 'empty'}")
    for d in st.drives:
        if d.barcode is None:
            lines.append(f"drive {d.number}: empty")
        else:
            src = d.source_slot if d.source_slot is not None else "-"
            lines.append(f"drive {d.number}: {d.barcode} (from slot {src})")
    return "\n".join(lines)


@app.command("library")
def library_cmd(
    directory: str = typer.Argument(..., metavar="DIR", help="Folder of the library (created if needed)."),
    slots: int = typer.Option(..., "--slots", help="Number of slots (each gets a blank tape)."),
    capacity: str = typer.Option(..., "--capacity", help="Capacity of each tape (e.g. 10M, 2G)."),
    drives: int = typer.Option(1, "--drives", help="Number of drives."),
    early_warning: str | None = typer.Option(
        None, "--early-warning", help="Size of the early-warning zone (default min(capacity/8, 4G))."
    ),
    max_record: str = typer.Option(
        str(DEFAULT_MAX_RECORD), "--max-record", help="Drive's maximum record size (READ BLOCK LIMITS)."
    ),
    barcode_prefix: str = typer.Option("TAP", "--barcode-prefix", help="Barcodes are PREFIX001, PREFIX002, ..."),
    rate: str = typer.Option("0", "--rate", help=_RATE_HELP + " Every tape of the library gets it."),
    buffer: str = typer.Option(_BUFFER_DEFAULT, "--buffer", help=_BUFFER_HELP),
    force: bool = typer.Option(False, "--force", help="Erase an existing library in DIR (tapes included)."),
) -> None:
    """Make a simulated autoloader: N slots with a blank tape each, D empty drives."""
    rt, buf = parse_rate(rate), parse_size(buffer)
    cap = parse_size(capacity)
    ew = parse_size(early_warning) if early_warning is not None else None
    mr = parse_size(max_record)
    try:
        lib = create_library(
            directory,
            slots,
            cap,
            drives=drives,
            early_warning=ew,
            max_record=mr,
            barcode_prefix=barcode_prefix,
            overwrite=force,
            rate=rt,
            buffer=buf,
        )
    except ValueError as e:
        raise CliError(str(e)) from None
    st = lib.status()
    typer.echo(
        f"{directory}: library with {slots} slots ({st.slots[0].barcode}..{st.slots[-1].barcode}, "
        f"{format_size(cap)} each), {drives} drive{'s' if drives != 1 else ''}"
        + (f", rate {format_rate(rt)} (buffer {format_size(buf)})" if rt else "")
    )


@app.command("library-status")
def library_status(
    directory: str = typer.Argument(..., metavar="DIR", help="Folder of the library."),
    as_json: bool = typer.Option(False, "--json", help="Print the inventory as JSON."),
) -> None:
    """Show what is in each slot and drive of a library."""
    st = _open_library(directory).status()
    if as_json:
        typer.echo(json.dumps(status_json(st), indent=2))
    else:
        typer.echo(render_status(directory, st))


@app.command("load")
def load_cmd(
    directory: str = typer.Argument(..., metavar="DIR", help="Folder of the library."),
    slot: int = typer.Argument(..., help="Slot holding the tape (1..N)."),
    drive: int = typer.Option(0, "--drive", help="Drive to load (0..D-1)."),
) -> None:
    """Move the tape in SLOT into a drive."""
    lib = _open_library(directory)
    barcode = lib.load(slot, drive)
    typer.echo(f"loaded {barcode} from slot {slot} into drive {drive} ({lib.drive_path(drive)})")


@app.command("unload")
def unload_cmd(
    directory: str = typer.Argument(..., metavar="DIR", help="Folder of the library."),
    drive: int = typer.Option(0, "--drive", help="Drive to unload (0..D-1)."),
    slot: int | None = typer.Option(None, "--slot", help="Destination slot (default: where it came from)."),
) -> None:
    """Move the tape in a drive back into a slot."""
    lib = _open_library(directory)
    barcode = lib.status().drives[drive].barcode if 0 <= drive < lib.num_drives else None
    dest = lib.unload(drive, slot)
    typer.echo(f"unloaded {barcode} from drive {drive} into slot {dest}")


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise CliError(f"invalid --listen {text!r} (expected HOST:PORT, e.g. 127.0.0.1:7001)")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@app.command("autoloader")
def autoloader_cmd(
    directory: str = typer.Argument(..., metavar="DIR", help="Folder of the library."),
    pty: bool = typer.Option(False, "--pty", help="Serve on a new pseudo-terminal; prints its path."),
    listen: str | None = typer.Option(
        None,
        "--listen",
        metavar="HOST:PORT",
        help="Serve on TCP (socket://HOST:PORT); PORT 0 picks one; prints the port.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every line to stderr."),
) -> None:
    """Run the device side of TALP/1 (docs/serial-autoloader.md) until SIGTERM/SIGINT."""
    import signal

    from .autoloader import PtyServer, TcpServer

    if pty == (listen is not None):
        raise CliError("give exactly one of --pty and --listen HOST:PORT")
    _open_library(directory)

    def log(text: str) -> None:
        print(f"tapesim: {text}", file=sys.stderr, flush=True)

    server: PtyServer | TcpServer
    if pty:
        server = PtyServer(directory, log=log if verbose else None)
        first = server.path
    else:
        assert listen is not None
        host, port = _parse_listen(listen)
        try:
            server = TcpServer(directory, host, port, log=log if verbose else None)
        except OSError as e:
            raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        first = str(server.port)
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda signum, frame: server.stop())
    try:
        print(first, flush=True)
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``tapesim``: runs the command, turns errors into one line + exit 1 (a bad
    option or environment value: exit 2)."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        early_writeback_enabled()  # a bad TAPEARC_EARLY_WRITEBACK: say so whatever the command
    except EnvironmentValueError as e:
        print(f"tapesim: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        rc = command.main(args=args, prog_name="tapesim", standalone_mode=False)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        print("tapesim: error: aborted", file=sys.stderr)
        raise SystemExit(1) from None
    except typer.TyperException as e:  # usage errors (typer's vendored click exceptions)
        msg = e.format_message()
        if msg:  # empty when no arguments were given: the help was printed
            print(f"tapesim: error: {msg}", file=sys.stderr)
        raise SystemExit(getattr(e, "exit_code", 2) or 2) from None
    except (CliError, LibraryError, SidecarError, SimhFormatError, TapeFormatError) as e:
        print(f"tapesim: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"tapesim: error: {where}{e.strerror or e}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
