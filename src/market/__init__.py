"""market: an async marketplace API that is observable by design."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("market")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
