"""``tapearc verify``: read a medium forward and check everything on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tapearc.cli.common import (
    CatalogOpt,
    ChangerDriveOpt,
    ChangerOpt,
    JsonOpt,
    PassphraseFileOpt,
    ReadMediaOpt,
    emit_json,
    fail,
    open_catalog,
    open_media,
    run,
    whole,
)
from tapearc.cli.progress import make_progress
from tapearc.cli.render import ranges, render_verify
from tapearc.errors import TapearcError, UsageError

if TYPE_CHECKING:
    from tapearc.catalog.db import Catalog
    from tapearc.crypto.keys import Key
    from tapearc.engine.mediasource import MediaSource
    from tapearc.engine.verify import VerifyReport


def verify(
    media: ReadMediaOpt,
    generation: Annotated[
        int | None,
        typer.Option(
            "--generation", help="Verify only this generation's tape files.", metavar="N", parser=whole("--generation")
        ),
    ] = None,
    all_media: Annotated[
        bool, typer.Option("--all", help="Verify every medium of the set (through --changer).")
    ] = False,
    volume: Annotated[str | None, typer.Option("--volume", help="Volume, when the media set holds several.")] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against", help="Also check that the generation equals this volume (block digests).", metavar="SOURCE"
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Also compare the medium record by record with this image.", metavar="MEDIUM"),
    ] = None,
    key_file: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Key file of an encrypted media set: also check every chunk's authentication tag and keyed block digests.",
            metavar="FILE",
        ),
    ] = None,
    passphrase_file: PassphraseFileOpt = None,
    changer: ChangerOpt = None,
    changer_drive: ChangerDriveOpt = None,
    catalog: CatalogOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read MEDIUM forward and check everything: every CRC, every block digest, the mapping, the
    trailer, the catalog. Lists per tape file OK or the damaged chunks with their volume block
    ranges, and the generations the damage affects. Exit code 20 on any damage. Encrypted
    chunks: without --key their CRCs are checked (the report counts the tags not checked), with
    --key also their tags and keyed digests."""

    def work() -> None:
        _check_against(against)
        key = _load_key(key_file, passphrase_file)
        with (
            open_catalog(catalog) as cat,
            open_media(media, changer, write=False, catalog=cat, changer_drive=changer_drive) as src,
        ):
            rep = _verify(src, cat, generation, volume, against, json_out, key)
            if all_media:
                _verify_rest_of_set(src, cat, rep, generation, volume, key)
            _check_found(rep, generation, volume)
            if image is not None:
                rep.image = _compare_image(src, image)
        _report(rep, json_out)

    run(json_out, work)


def _check_against(against: str | None) -> None:
    """--against names a source (a file, a block device, an NBD URI): a name that looks like
    another URI is refused before the medium is opened and read (hours on a tape)."""
    if against is not None:
        from tapearc.nbdclient import check_source_name

        check_source_name(against)


def _load_key(key_file: str | None, passphrase_file: str | None) -> Key | None:
    """The data key of --key (opened with --passphrase-file, else asked on the terminal)."""
    if key_file is None:
        if passphrase_file is not None:
            raise UsageError("--passphrase-file is the passphrase of a key file: give the key file with --key FILE")
        return None
    from tapearc.crypto.keyfile import load_key

    return load_key(key_file, passphrase_file)


def _verify(
    src: MediaSource,
    cat: Catalog,
    generation: int | None,
    volume: str | None,
    against: str | None,
    json_out: bool,
    key: Key | None,
) -> VerifyReport:
    from tapearc.engine.scan import sync_medium
    from tapearc.engine.verify import run_verify

    drive = src.current()
    try:
        sync_medium(drive, cat)
    except TapearcError:
        pass  # a damaged medium: verify reports what it can
    return run_verify(
        drive, cat, generation=generation, volume=volume, against=against, progress=make_progress(json_out), key=key
    )


def _verify_rest_of_set(
    src: MediaSource, cat: Catalog, rep: VerifyReport, generation: int | None, volume: str | None, key: Key | None
) -> None:
    """--all: verify the set's other media too (through the changer)."""
    from tapearc.engine.layout import read_label
    from tapearc.engine.verify import affected_generations, verify_medium

    if not (src.can_change and rep.media[0].media_set):
        return
    lab = read_label(src.current())
    for m in cat.media_of_set(lab.media_set_uuid):
        if m.uuid == lab.medium_uuid:
            continue
        src.release()
        d = src.medium(m.uuid, m.set_uuid, m.sequence, m.label or None)
        rep.media.append(verify_medium(d, cat, generation=generation, volume=volume, key=key))
    rep.media.sort(key=lambda r: r.sequence or 0)
    rep.affected = affected_generations(cat, rep.media)


def _check_found(rep: VerifyReport, generation: int | None, volume: str | None) -> None:
    from tapearc.engine.verify import check_selection_found

    check_selection_found(rep.media, generation, volume)


def _compare_image(src: MediaSource, image: str) -> dict[str, Any]:
    from tapearc.engine.compare import compare_media
    from tapearc.media import open_medium

    with open_medium(image, write=False) as other:
        return compare_media(src.current(), other).to_json()


def _report(rep: VerifyReport, json_out: bool) -> None:
    if json_out:
        emit_json(rep.to_json())
    else:
        render_verify(rep)
    if rep.source_differs:
        # the medium is intact: the source is what differs (not damage)
        assert rep.against is not None
        err = _source_differs(rep.against)
        fail(err, False)  # the report above is the JSON output
        raise typer.Exit(err.exit_code)
    if not rep.ok:
        raise typer.Exit(20)


def _source_differs(a: dict[str, Any]) -> TapearcError:
    from tapearc.errors import MediaDifferError

    more = " ..." if len(a["differing_ranges"]) > 20 else ""
    sizes = f"; sizes {a['volume_size']} vs {a['source_size']}" if a["volume_size"] != a["source_size"] else ""
    return MediaDifferError(
        f"{a['source']} differs from volume {a['volume']!r} generation {a['generation']} on the medium: "
        f"{a['differing_blocks']} blocks (blocks {ranges(a['differing_ranges'], 20)}{more}){sizes}; "
        "the medium itself is intact",
        hint="the source changed since that backup (or is another volume); the backup on the medium is sound",
    )


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
