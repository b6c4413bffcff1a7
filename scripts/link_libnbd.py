"""Make Debian's libnbd Python module (python3-libnbd) importable in this virtual environment.

libnbd's Python bindings are not on PyPI; Debian builds them for the system Python 3. The module
is two files (nbd.py and its extension libnbdmod.cpython-3XX-*.so): when the extension matches
this interpreter's version, they are linked into the venv's site-packages (nothing else of the
system's packages is). Without python3-libnbd, or for another Python version, it says so and
tapearc works without NBD sources and targets. Run by make; idempotent.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig

SYSTEM = "/usr/lib/python3/dist-packages"


def main() -> int:
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    mods = sorted(glob.glob(os.path.join(SYSTEM, f"libnbdmod.{tag}-*.so")))
    py = os.path.join(SYSTEM, "nbd.py")
    if not mods or not os.path.exists(py):
        print(
            f"note: no python3-libnbd for Python {sys.version_info.major}.{sys.version_info.minor} in {SYSTEM}; "
            "NBD sources and targets are unavailable (apt-get install python3-libnbd)"
        )
        return 0
    site = sysconfig.get_paths()["purelib"]
    for f in (py, mods[0]):
        dest = os.path.join(site, os.path.basename(f))
        if os.path.islink(dest) or os.path.exists(dest):
            os.remove(dest)
        os.symlink(f, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
