"""What the running code was built from: the package version and, when known, the git commit. Sentry's
release and the docs' "which build is this" both come from here."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from market import __version__

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # src/market/build.py -> the checkout, when run from one


@cache
def checkout_sha() -> str | None:
    """HEAD of the source checkout this code runs from (an editable install, `make run`), else None (an
    installed wheel, an image: they pass MARKET_BUILD_SHA instead). Read once per process."""
    if not (_SOURCE_ROOT / ".git").exists():
        return None
    try:
        result = subprocess.run(
            ["git", "-C", str(_SOURCE_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def release(explicit: str | None = None, build_sha: str | None = None) -> str:
    """SENTRY_RELEASE when given; else `market@<version>+<sha>` (MARKET_BUILD_SHA, or the checkout's HEAD),
    or `market@<version>` when no commit is known."""
    if explicit:
        return explicit
    sha = (build_sha or checkout_sha() or "").strip()[:12]
    return f"market@{__version__}+{sha}" if sha else f"market@{__version__}"
