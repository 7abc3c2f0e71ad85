"""genqueue's one version: the installed distribution's metadata (pyproject.toml's `version`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    try:
        return version("genqueue")
    except PackageNotFoundError:  # a bare source tree on sys.path, never installed
        return "0+unknown"
