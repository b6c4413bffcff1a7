"""restore --key of tampered encrypted media (the tamperings of
tests/engine/test_encrypted_read_tamper.py, every CRC fixed up): the restore fails with one
error line, or restores exactly the generation's bytes; never other bytes with exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import tapearc
from tests.engine.enc_media import BS
from tests.engine.test_encrypted_read_tamper import TAMPERINGS, medium
from tests.engine.test_verify import records, write_image


def _restore_takes_a_key() -> bool:
    p = tapearc("restore", "--help")
    return "--key" in p.stdout


pytestmark = pytest.mark.skipif(not _restore_takes_a_key(), reason="restore --key is not built yet")


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
@pytest.mark.parametrize("generation", [1, 2])
def test_restore_of_a_tampered_medium_never_gives_wrong_bytes(tmp_path: Path, how: str, generation: int) -> None:
    _, med, img = medium(tmp_path)  # its key file and passphrase file in tmp_path
    files = records(img)
    TAMPERINGS[how](files, med)
    write_image(img, files)
    out = tmp_path / "out.img"
    args = ["--key", str(tmp_path / "set.key"), "--passphrase-file", str(tmp_path / "set.pass")]
    p = tapearc("restore", "--media", med.spec, "--to", str(out), "--generation", str(generation), *args)
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:
        assert out.read_bytes() == med.versions[generation - 1], (how, p.stdout, p.stderr)
    else:  # the damage named, then the error (a partial restore names the blocks not restored)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert all(ln.startswith("tapearc: ") for ln in lines), p.stderr
        assert any(ln.startswith("tapearc: error: ") for ln in lines), p.stderr


@pytest.mark.parametrize("how", ["flip_ciphertext_bit", "swap_chunks_renumbered", "remap_runs", "plain_chunk"])
def test_restore_names_the_damage(tmp_path: Path, how: str) -> None:
    """The tamperings only a tag (or the plain-chunk rule) catches: the restore of the
    generation that needs the chunk names the damage (medium, tape file, record, blocks) and
    ends as a partial restore (exit 23) naming the blocks it could not restore."""
    _, med, img = medium(tmp_path)
    files = records(img)
    TAMPERINGS[how](files, med)
    write_image(img, files)
    args = ["--key", str(tmp_path / "set.key"), "--passphrase-file", str(tmp_path / "set.pass")]
    out = tmp_path / "out.img"
    p = tapearc("restore", "--media", med.spec, "--to", str(out), *args)
    assert p.returncode == 23, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert lines[0].startswith(f"tapearc: damaged: medium {med.spec}, tape file ") and ", blocks " in lines[0], p.stderr
    assert any(ln.startswith("tapearc: error: ") and "restore is partial" in ln for ln in lines), p.stderr
    if how == "flip_ciphertext_bit":  # chunk 2 (blocks 10-13) not restored: zeros, all else right
        want = bytearray(med.versions[1])
        want[10 * BS : 14 * BS] = bytes(4 * BS)
        assert out.read_bytes() == bytes(want)
