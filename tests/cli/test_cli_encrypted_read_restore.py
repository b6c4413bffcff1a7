"""restore --key of tampered encrypted media (the tamperings of
tests/engine/test_encrypted_read_tamper.py, every CRC fixed up): the restore fails with one
error line, or restores exactly the generation's bytes; never other bytes with exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import tapearc
from tests.engine.enc_media import key_material
from tests.engine.test_encrypted_read_tamper import TAMPERINGS, medium
from tests.engine.test_verify import records, write_image


def _restore_takes_a_key() -> bool:
    p = tapearc("restore", "--help")
    return "--key" in p.stdout


pytestmark = pytest.mark.skipif(not _restore_takes_a_key(), reason="restore --key is not built yet")


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
@pytest.mark.parametrize("generation", [1, 2])
def test_restore_of_a_tampered_medium_never_gives_wrong_bytes(tmp_path: Path, how: str, generation: int) -> None:
    key, med, img = medium(tmp_path)
    km = key_material(tmp_path, secret=key.secret)  # its key file and passphrase file
    files = records(img)
    TAMPERINGS[how](files, med)
    write_image(img, files)
    out = tmp_path / "out.img"
    args = ["--key", str(km.key_file), "--passphrase-file", str(km.passphrase_file)]
    p = tapearc("restore", "--media", med.spec, "--to", str(out), "--generation", str(generation), *args)
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:
        assert out.read_bytes() == med.versions[generation - 1], (how, p.stdout, p.stderr)
    else:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert lines and lines[0].startswith("tapearc: error: "), p.stderr


@pytest.mark.parametrize("how", ["flip_ciphertext_bit", "swap_chunks_renumbered", "remap_runs", "plain_chunk"])
def test_restore_names_the_damage(tmp_path: Path, how: str) -> None:
    """The tamperings only a tag (or the plain-chunk rule) catches: the restore of the
    generation that needs the chunk fails as damage (exit 20) naming the medium."""
    key, med, img = medium(tmp_path)
    km = key_material(tmp_path, secret=key.secret)
    files = records(img)
    TAMPERINGS[how](files, med)
    write_image(img, files)
    args = ["--key", str(km.key_file), "--passphrase-file", str(km.passphrase_file)]
    p = tapearc("restore", "--media", med.spec, "--to", str(tmp_path / "out.img"), *args)
    assert p.returncode == 20, (p.returncode, p.stdout, p.stderr)
    assert med.spec.removeprefix("sim:") in p.stderr.splitlines()[0], p.stderr
