"""How an NBD export is named and recorded: the default volume name, the suggested name when it
is taken, and the identity in the generation header (the URI; device and inode 0)."""

from __future__ import annotations

import os

from tapearc.engine.identity import refuse_source_is_medium
from tapearc.engine.volume import default_volume_name
from tapearc.engine.volumes import source_identity, suggest_name


def test_default_names() -> None:
    assert default_volume_name("nbd+unix:///vm1?socket=/run/vm1.sock") == "vm1"
    assert default_volume_name("nbd://host.example:10809/pool/vm2") == "vm2"
    assert default_volume_name("nbd+unix:///?socket=/run/data.sock") == "data.sock"
    assert default_volume_name("nbd://10.0.0.5/") == "10.0.0.5"
    assert default_volume_name("/dev/vg0/root") == "root"


def test_suggested_names() -> None:
    assert suggest_name("nbd+unix:///disk?socket=/run/b.sock", {"disk"}) == "b/disk"
    assert suggest_name("nbd://hostb/disk", {"disk", "hostb/disk"}) == "hostb/disk-2"


def test_identity_of_a_uri() -> None:
    uri = "nbd+unix:///disk?socket=/run/x.sock"
    ident = source_identity(uri, None)
    assert (ident.path, ident.real_path, ident.dev, ident.ino) == (uri, uri, 0, 0)
    assert source_identity(uri, os.stat("/")).dev == 0  # a URI is never stat'ed for identity


def test_a_uri_is_not_looked_for_on_the_medium() -> None:
    refuse_source_is_medium("nbd+unix:///disk?socket=/nonexistent/x.sock", "sim:/nonexistent/t.tap")
