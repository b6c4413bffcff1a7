"""``tapearc drive status``: what the drive and its tape say, and what tapearc finds on the tape.

Registered by the main app with :func:`register` (``app.add_typer(drive_app, name="drive")``); also runnable alone as
``python -m tapearc.cli.drive_cmd status --media DEV``.

For an st device it shows what ``mt-st status`` / ``tell`` would (file and block number, the
MTIOCPOS position, the status bits by name, block size, density, soft errors, write protection)
without moving the tape, then reads the volume label: that needs the beginning of the tape, so
the tape is rewound and then LOCATEd back to where it was (``--no-label`` leaves it alone).
For ``sim:`` and ``dir:`` media it shows the backend's DriveStatus and the label the same way.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tapearc.cli.common import DriveOpt, JsonOpt, emit_json, run
from tapearc.cli.render import render_drive_status
from tapearc.errors import FormatError, MediumUnavailableError, NotTapearcMediumError, TapearcError

drive_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Look at a tape drive (or simulated tape, or disk folder) and the medium in it.",
)


@drive_app.callback()
def _drive_group() -> None:
    """Look at a tape drive (or simulated tape, or disk folder) and the medium in it."""


def _st_path(spec: str) -> str | None:
    if spec.lower().startswith("st:"):
        return spec[3:]
    if spec.startswith(("/dev/nst", "/dev/st")):
        return spec
    return None


def _label_info(drive: Any, back_to: int | None) -> tuple[str, dict[str, Any] | None, str]:
    """(state, label, note): read the label from the beginning (tapefiles.probe_label), then
    return to ``back_to``. state: blank, tapearc, damaged (a tapearc label that does not decode,
    or a ``sim:`` image holding one), foreign, or unknown (the first record cannot be read)."""
    from tapearc.engine.tapefiles import probe_label

    state, label, note = "unknown", None, ""
    try:
        probe = probe_label(drive)
    except TapearcError as e:  # the rewind failed
        note = f"cannot read the label: {e.message}"
    else:
        state, err, lab = probe.state, probe.error, probe.label
        if err is not None and not isinstance(err, FormatError | NotTapearcMediumError):
            state, note = "unknown", f"cannot read the label: {err.message}"
        elif err is not None:
            note = err.message.replace("; nothing was written", "")
        if lab is not None:
            label = {
                "medium_uuid": str(lab.medium_uuid),
                "media_set_uuid": str(lab.media_set_uuid),
                "sequence": lab.sequence,
                "record_size": lab.record_size,
                "created": lab.created,
                "text": lab.text,
            }
    if back_to is not None:
        try:
            drive.locate(back_to)
            if back_to:
                note = (note + "; " if note else "") + (
                    f"the tape was rewound to read the label and returned to object {back_to}"
                )
        except TapearcError as e:
            note = (note + "; " if note else "") + (
                f"the tape was rewound to read the label and could not return to object {back_to}: {e.message}"
            )
    return state, label, note


def drive_status(spec: str, *, read_label: bool = True) -> dict[str, Any]:
    """Everything ``drive status`` shows, as a JSON-able dict."""
    from tapearc.media import open_medium

    path = _st_path(spec)
    if path is None:
        drive = open_medium(spec, write=False)
        try:
            st = drive.status()
            out: dict[str, Any] = {
                "medium": st.name,
                "backend": "",
                "tape": True,
                "position": {"logical": st.position.logical, "file": st.position.file, "record": st.position.record},
                "at_bot": st.at_bot,
                "at_eod": st.at_eod,
                "early_warning": st.early_warning,
                "write_protected": st.write_protected,
                "max_record_size": st.max_record_size,
                "capacity": st.capacity,
                "used": st.used,
                "details": {k: v for k, v in st.details.items() if isinstance(v, (int, str, bool, list))},
            }
            out["backend"] = drive.name.split(":", 1)[0]
            if read_label:
                out["state"], out["label"], out["label_note"] = _label_info(drive, st.position.logical)
            return out
        finally:
            drive.close()
    return _st_status(path, f"st:{path}", read_label)


def _st_status(path: str, name: str, read_label: bool) -> dict[str, Any]:
    from tapearc.media import mtio, open_medium
    from tapearc.media.linux_st import probe_st

    out: dict[str, Any] = {"medium": name, "backend": "st"}
    try:
        ops, probe = probe_st(path, write=False, name=name)
    except MediumUnavailableError as e:
        if e.details.get("reason") != "no-tape":
            raise
        out.update(tape=False, state="no tape", label=None)
        return out
    try:
        g = ops.mtget()
        logical = ops.mtpos()
    finally:
        ops.close()
    gstat = int(g.mt_gstat)
    out.update(
        tape=True,
        st={
            "file_number": int(g.mt_fileno),
            "block_number": int(g.mt_blkno),
            "position": logical,
            "partition": int(g.mt_resid),
            "flags": mtio.gstat_flags(gstat),
            "gstat": f"0x{gstat:08x}",
            "block_size": int(g.mt_dsreg) & 0xFFFFFF,
            "density": f"0x{(int(g.mt_dsreg) >> 24) & 0xFF:02x}",
            "soft_errors": int(g.mt_erreg) & 0xFFFF,
            "options": None if probe.options is None else f"0x{probe.options:08x}",
            "scsi2logical": probe.scsi2logical,
            "rewinding_device": probe.rewinding,
        },
        position={"logical": logical, "file": int(g.mt_fileno), "record": int(g.mt_blkno)},
        at_bot=logical == 0,
        at_eod=True if gstat & mtio.GMT_EOD else None,
        early_warning=bool(gstat & mtio.GMT_EOT),
        write_protected=bool(gstat & mtio.GMT_WR_PROT),
        max_record_size=ops.max_record,
    )
    if probe.scsi2logical_note:
        out["st"]["note"] = probe.scsi2logical_note
    if read_label:
        drive = open_medium(name, write=False)  # rewinds
        try:
            out["state"], out["label"], out["label_note"] = _label_info(drive, logical)
        finally:
            drive.close()
    return out


@drive_app.command("status")
def status(
    media: DriveOpt,
    no_label: Annotated[
        bool, typer.Option("--no-label", help="Do not read the label (the tape does not move).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the drive's state (as mt-st status would) and the tape's tapearc label."""
    run(json_out, lambda: _status(media, no_label, json_out))


def _status(media: str, no_label: bool, json_out: bool) -> None:
    info = drive_status(media, read_label=not no_label)
    if json_out:
        emit_json(info)
    else:
        render_drive_status(info)


def register(app: typer.Typer) -> None:
    app.add_typer(drive_app, name="drive", help="Tape drive commands (status).")


if __name__ == "__main__":
    drive_app(prog_name="tapearc drive")
