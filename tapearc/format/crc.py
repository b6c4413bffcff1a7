"""CRC-32C (Castagnoli), the only checksum of the tapearc format.

Parameters (Rocksoft model): width 32, poly 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF,
refin/refout true, xorout 0xFFFFFFFF; check value ``crc32c(b"123456789") == 0xE3069283``.

The hot path uses the ``crc32c`` package (SSE4.2 / ARMv8 instructions when available). The
tests compare it against crcmod's ``crc-32c`` as the reference implementation.

Its C extension module is loaded without the package's ``__init__``, which imports
``importlib.metadata`` for the package's ``__version__``: ~10 ms of every command's start-up.
Where the package is laid out otherwise, it is imported as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import cast

__all__ = ["CRC32C_CHECK", "crc32c"]

_Crc = Callable[[bytes | bytearray | memoryview, int], int]


def load_crc32c() -> _Crc:
    """``crc32c.crc32c`` from the C extension module ``crc32c._crc32c`` alone (else the package)."""
    from importlib.machinery import ExtensionFileLoader, PathFinder
    from importlib.util import find_spec, module_from_spec

    name = "crc32c._crc32c"
    loaded = sys.modules.get(name)
    if loaded is None:
        package = find_spec("crc32c")
        where = list(package.submodule_search_locations or ()) if package is not None else []
        spec = PathFinder.find_spec(name, where) if where else None
        if spec is not None and isinstance(spec.loader, ExtensionFileLoader):
            loaded = module_from_spec(spec)
            spec.loader.exec_module(loaded)
            sys.modules[name] = loaded  # `import crc32c` later reuses it
    function = getattr(loaded, "crc32c", None)
    if not callable(function):
        import crc32c as package_module

        function = package_module.crc32c
    return cast(_Crc, function)


_crc = load_crc32c()

#: CRC-32C of the ASCII bytes ``123456789``.
CRC32C_CHECK = 0xE3069283


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Return the CRC-32C of ``data``.

    ``value`` is the CRC of the bytes before ``data`` (0 for none), so that
    ``crc32c(b, crc32c(a)) == crc32c(a + b)``. ``data`` may be any contiguous buffer.
    """
    return _crc(data, value)
