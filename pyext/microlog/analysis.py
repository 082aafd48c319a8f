"""End-of-run analysis written to the log, as the original Microlog does:
possible memory leaks (the live object types with the most instances) and
files opened during the run and never closed. (The garbage collector's
statistics are in api.gc_report.)

Both stay cheap: the leak report walks gc.get_objects() once, at the end
of the run, counting by type in C; the file report comes from an audit hook
in C (openfiles.c) that notes each open() of the run (a dictionary
insert, at most MAX_TRACKED entries) and, at the end, /proc/self/fd.
"""

from __future__ import annotations

import gc
import os

from microlog import _native

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Tuple

# Modules whose objects are the runtime's, not the program's (the original's list).
BUILTIN_MODULES = frozenset({
    "__future__", "_abc", "_collections", "_distutils_hack", "_frozen_importlib",
    "_frozen_importlib_external", "_io", "_json", "_sitebuiltins", "_thread", "_weakrefset",
    "ast", "builtins", "calendar", "collections", "email._policybase", "email.charset",
    "encodings.utf_8", "functools", "http", "itertools", "json.decoder", "json.encoder",
    "logging", "microlog", "microlog.api", "microlog.capture", "microlog.analysis",
    "operator", "os", "pathlib", "random", "re", "reprlib", "socketserver", "string",
    "threading", "traceback", "types", "typing", "weakref",
})  # fmt: skip
BASIC_TYPES = (BaseException, list, dict, tuple, set, str, int, float, bool, type(None))
TOP_TYPES = 100
MAX_TRACKED = 10_000  # opens remembered per run; more are counted, not kept


def _interesting(kind: type) -> bool:
    """Instances of kind may be the program's own leak (the original's rule)."""
    try:
        module = kind.__module__
        return (
            module not in BUILTIN_MODULES
            and not module.startswith("microlog.")
            and not issubclass(kind, type)
            and not issubclass(kind, BASIC_TYPES)
        )
    except Exception:  # pylint: disable=broad-except
        return False


def live_types(top: int = TOP_TYPES) -> Tuple[int, List[Tuple[str, int]]]:
    """(instances of interesting types, [(module.Class, count)] most first)."""
    counts: Dict[type, int] = {}
    objects = gc.get_objects()
    try:
        for kind in map(type, objects):
            counts[kind] = counts.get(kind, 0) + 1
    finally:
        del objects
    kept = [(kind, n) for kind, n in counts.items() if _interesting(kind)]
    kept.sort(key=lambda item: -item[1])
    total = sum(n for _, n in kept)
    return total, [(f"{kind.__module__}.{kind.__qualname__}", n) for kind, n in kept[:top]]


def leaks_report() -> str:
    """The original's "Possible Memory Leaks" section ('' when none)."""
    total, top = live_types()
    if not total:
        return ""
    lines = "\n".join(f" - {n:,} instance{'s' if n > 1 else ''} of {name}" for name, n in top)
    return (
        f"# Possible Memory Leaks\nFound {total:,} relevant leak{'s' if total > 1 else ''}. "
        f"Here are the top {len(top)}:\n{lines}\n"
    )


class OpenFiles:
    """Files opened while the run records and still open at its end."""

    def __init__(self) -> None:
        self.active = False
        self.at_start: set = set()
        self.dropped = 0

    def start(self) -> None:
        """Notes what is open now and starts noting every open() (_native's
        audit hook, in C: a hook in Python would run for every audit event
        of the program, id() included)."""
        self.at_start = set(_open_paths())
        self.dropped = 0
        try:
            self.active = bool(_native.open_files_start(_OWN_DIR, _STDLIB_DIR, MAX_TRACKED))
        except Exception:  # pylint: disable=broad-except
            self.active = False  # a subinterpreter: no report, the run goes on

    def forget(self) -> None:
        """Stops noting, without a report (a forked child's copy of the run)."""
        if self.active:
            self.active = False
            _native.open_files_stop()

    def stop(self) -> str:
        """The original's "File Descriptors Leaked" section ('' when none)."""
        if not self.active:
            return ""
        self.active = False
        noted, self.dropped = _native.open_files_stop()
        opened: Dict[str, Tuple[float, str, str]] = {}
        for path, (when, mode, filename, line) in noted.items():  # in order: the last open wins
            where = f"{filename}:{line}" if filename is not None else "?"
            opened[os.path.normpath(path)] = (when, str(mode) if mode is not None else "r", where)
        still = set(_open_paths()) - self.at_start
        leaked = sorted(
            (when, path, mode, where)
            for path, (when, mode, where) in opened.items()
            if path in still
        )
        if not leaked and not self.dropped:
            return ""
        text = "# File Descriptors Leaked\n"
        if leaked:
            lines = "\n".join(
                f" - At {when:.2f}s: {path} mode={mode} {where}"
                for when, path, mode, where in leaked
            )
            text += (
                f"Found {len(leaked)} file{'s' if len(leaked) > 1 else ''} "
                f"that were opened, but never closed:\n{lines}\n"
            )
        if self.dropped:
            text += (
                f"{self.dropped:,} more open{'s' if self.dropped > 1 else ''} of other paths "
                f"were not tracked (only the first {MAX_TRACKED:,} paths are): files they left "
                f"open are not listed.\n"
            )
        return text


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep


def _open_paths() -> List[str]:
    """Paths of the regular files this process has open now."""
    paths = []
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/"):
                paths.append(target)
    except OSError:
        pass
    return paths
