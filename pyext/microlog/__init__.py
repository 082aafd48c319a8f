#
# Microlog. A low-overhead sampling profiler for Python.
#
"""Microlog package: start(), stop(), enabled(...), print(...), is_running()."""

from .api import __version__
from .api import enabled
from .api import is_running
from .api import print  # pylint: disable=redefined-builtin
from .api import start
from .api import stop

__all__ = [
    "is_running",
    "enabled",
    "start",
    "stop",
    "print",
]


def main() -> None:
    """Entry point for command-line usage."""
    from microlog.__main__ import main as cli_main  # pylint: disable=import-outside-toplevel

    cli_main()
