"""Where a project's folders are: notebooks/, params/, models/, runs/.

Notebooks run with their own folder as the working directory (JupyterLab and papermill
alike), while parameter files name paths from the project root (``models/x.zip``).
:func:`resolve` makes both agree: relative paths are taken from the project root.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "TRADINGLIB_ROOT"


def project_root(start: str | Path | None = None) -> Path:
    """The project root: ``$TRADINGLIB_ROOT`` if set, else the nearest folder at or above
    ``start`` (default: the working directory) that holds both ``notebooks/`` and
    ``params/``, else ``start`` itself."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "params").is_dir():
            return folder
    return here


def resolve(path: str | Path, root: Path | None = None) -> Path:
    """``path`` as an absolute path; a relative one is taken from the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root or project_root()) / p
