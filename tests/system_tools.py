"""Programs from Debian packages that some tests drive (a database shell, a browser, `ip`).

`python3 dev.py test` installs the packages in its SYSTEM_PACKAGES list when it runs as root
with apt-get; elsewhere a test that needs a missing one skips and says how to get it, except
under CI (CI=true), where a skipped check would hide a missing install step, so it fails.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_program(program: str, package: str) -> str:
    """The path of `program`, from the Debian package `package` (listed in dev.py's SYSTEM_PACKAGES)."""
    found = shutil.which(program)
    if found is not None:
        return found
    message = (
        f"{program} is not installed: apt-get install {package} "
        "(python3 dev.py test installs it when it runs as root with apt-get)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
