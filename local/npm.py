"""npm packages the local stack and the tests use, installed on first use into .docdrop/npm (never shipped)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".docdrop" / "npm"


class NpmUnavailable(RuntimeError):
    """npm is missing, or a package would not install."""


def node_modules(*packages: str, cache: Path = CACHE) -> Path:
    """The node_modules folder holding `packages` (each name@version), installing those not there yet."""
    folder = cache / "node_modules"
    missing = [p for p in packages if not _installed(folder, p)]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            raise NpmUnavailable(f"npm is needed to install {', '.join(missing)}")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(cache), *missing],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        still = [p for p in missing if not _installed(folder, p)]
        if still:
            raise NpmUnavailable(f"npm did not install {', '.join(still)}")
    return folder


def _installed(folder: Path, package: str) -> bool:
    """`name@version` is in `folder` at that version (a scoped name starts with @)."""
    name, _, version = package.rpartition("@")
    manifest = folder / name / "package.json"
    return manifest.exists() and f'"version": "{version}"' in manifest.read_text()
