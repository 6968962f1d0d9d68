"""Where the non-Python parts of the project live.

In a checkout (and an editable install) ``templates/``, ``migrations/`` and
``config/`` sit at the top of the repository, beside the package. A wheel
carries them inside the package as ``tenderpool/_data/<name>`` (see
``pyproject.toml``). Both places are looked at, the packaged copy first, and a
folder only counts if it holds the file that proves it is ours.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

_MARKERS = {
    "templates": "base.html",
    "migrations": "env.py",
    "config": "default.toml",
}


def resource_dir(name: str) -> Path:
    """Return the folder ``name`` (templates, migrations or config), wherever it was installed."""
    marker = _MARKERS[name]
    for candidate in (PACKAGE_DIR / "_data" / name, PACKAGE_DIR.parent / name):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ folder of TenderPool (looked beside {PACKAGE_DIR})")


STATIC_DIR = PACKAGE_DIR / "static"
