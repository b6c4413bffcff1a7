"""tapearc.format's lazy exports: every exported name resolves, to the submodule's own object;
importing the package imports no submodule but the constants, a catalog command does not import
construct, the dirty-bitmap incremental's engine neither the key records nor sealing."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile

import pytest

from tapearc import format as fmt


def test_every_export_resolves() -> None:
    for name in fmt.__all__:
        assert getattr(fmt, name) is not None, name
    for name, module in fmt.LAZY_EXPORTS.items():
        assert name in fmt.__all__
        assert getattr(fmt, name) is getattr(importlib.import_module(f"tapearc.format.{module}"), name)


def test_package_alone_and_catalog_commands() -> None:
    code = (
        "import sys\n"
        "import tapearc.format\n"
        "assert not {m for m in sys.modules if m.startswith('tapearc.format.')} - {'tapearc.format.constants'}\n"
        "import tapearc.catalog.db, tapearc.catalog.views, tapearc.catalog.leases, tapearc.cli.catalog_cmd\n"
        "assert 'construct' not in sys.modules and 'tapearc.format.codec' not in sys.modules\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        fmt.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_lazy_submodules_not_imported() -> None:
    code = (
        "import sys\n"
        "from tapearc.format import codec, crc32c\n"
        "import tapearc.engine.backup\n"  # the dirty-bitmap incremental's engine
        "lazy = {'tapearc.format.keyrecord', 'tapearc.format.sealing', 'cryptography'}\n"
        "assert not lazy & set(sys.modules), lazy & set(sys.modules)\n"
        "from tapearc.format import seal_chunk, WrappedKey\n"
        "assert {'tapearc.format.keyrecord', 'tapearc.format.sealing'} <= set(sys.modules)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_media_modules() -> None:
    """What a command that opens a medium imports before its timed work: every lazily exported
    submodule but the key records and sealing."""
    assert set(fmt.MEDIA_MODULES) == set(fmt.LAZY_EXPORTS.values()) - {"keyrecord", "sealing"}
    code = (
        "import sys\n"
        "from tapearc.cli.common import open_media\n"
        "assert 'tapearc.format.codec' not in sys.modules\n"
        "with open_media(sys.argv[1], None, write=True):\n"
        "    assert {'tapearc.format.codec', 'tapearc.format.trailer'} <= set(sys.modules)\n"
    )
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-c", code, f"sim:{d}/t.tap"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
