"""Microlog configuration, read from the environment at each start().

Variables (the MICROLOG_-prefixed spellings of the periods are accepted too;
the TRACER_ spelling wins when both are set):

- ``MICROLOG_SERVER``: base URL of the collector (default http://localhost:7777)
- ``MICROLOG_DISABLE``: ``true`` turns start() into a no-op
- ``TRACER_SAMPLE_DELAY``: seconds between stack samples (default 0.05, at least 0.001)
- ``TRACER_STATUS_DELAY``: seconds between status ticks (default 0.1)
- ``TRACER_MEMORY_DELAY``: seconds between memory readings (default 1.0)

A value that is not a usable number falls back to its default with one
warning line on stderr; it never stops the program.
"""

from __future__ import annotations

import os
import sys

# typing and dataclasses cost milliseconds to import and `python -m microlog`
# must add little to the program's start-up: annotations only (mypy reads
# this block, Python never runs it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Optional, TextIO

DEFAULT_SERVER = "http://localhost:7777"
MIN_PERIOD = 0.001
MAX_PERIOD = 3600.0

# name -> default, in seconds
PERIODS = {
    "SAMPLE_DELAY": 0.05,
    "STATUS_DELAY": 0.1,
    "MEMORY_DELAY": 1.0,
}


class Config:
    """Settings of one run (immutable; compared by value)."""

    __slots__ = ("server", "disabled", "sample_period", "status_period", "memory_period")

    server: str
    disabled: bool
    sample_period: float
    status_period: float
    memory_period: float

    def __init__(  # pylint: disable=too-many-arguments
        self,
        server: str,
        disabled: bool,
        sample_period: float,
        status_period: float,
        memory_period: float,
    ) -> None:
        values = (server, disabled, sample_period, status_period, memory_period)
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable: cannot set {name}")

    def _values(self) -> tuple:  # type: ignore[type-arg]
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Config({fields})"


def is_disabled(env: Optional[Mapping[str, str]] = None) -> bool:
    """True when MICROLOG_DISABLE is "true" (any case), as in the original."""
    env = os.environ if env is None else env
    return env.get("MICROLOG_DISABLE", "false").strip().lower() == "true"


def server(env: Optional[Mapping[str, str]] = None) -> str:
    """The collector's base URL without a trailing slash."""
    env = os.environ if env is None else env
    value = env.get("MICROLOG_SERVER", "").strip() or DEFAULT_SERVER
    return value.rstrip("/")


def warn(message: str, stream: Optional[TextIO] = None) -> None:
    """One line "Microlog: message" on stream (default: the process's stderr)."""
    try:
        print(f"Microlog: {message}", file=stream or sys.__stderr__)
    except Exception:  # pylint: disable=broad-except
        pass  # a closed stderr must not stop the program


def period(
    name: str,
    env: Optional[Mapping[str, str]] = None,
    stream: Optional[TextIO] = None,
) -> float:
    """Seconds for TRACER_<name> (or MICROLOG_<name>); its default when unset or bad."""
    env = os.environ if env is None else env
    default = PERIODS[name]
    for key in (f"TRACER_{name}", f"MICROLOG_{name}"):
        raw = env.get(key)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = float(raw)
        except ValueError:
            warn(f"{key}={raw!r} is not a number; using {default}", stream)
            return default
        # value != value: NaN; the bounds exclude the infinities (no math import)
        if value != value or value < MIN_PERIOD or value > MAX_PERIOD:
            warn(
                f"{key}={raw!r} is outside [{MIN_PERIOD}, {MAX_PERIOD:g}] seconds; using {default}",
                stream,
            )
            return default
        return value
    return default


def load(env: Optional[Mapping[str, str]] = None, stream: Optional[TextIO] = None) -> Config:
    """Reads every setting; bad values become defaults with one warning each."""
    env = os.environ if env is None else env
    return Config(
        server=server(env),
        disabled=is_disabled(env),
        sample_period=period("SAMPLE_DELAY", env, stream),
        status_period=period("STATUS_DELAY", env, stream),
        memory_period=period("MEMORY_DELAY", env, stream),
    )
