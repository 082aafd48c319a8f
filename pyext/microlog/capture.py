"""Output and logging capture.

While a run records, every complete line written to ``sys.stdout`` or
``sys.stderr`` becomes a STDOUT/STDERR log event and every logging record
of every logger becomes one LOGGING event, each with the stack of the code
that emitted it (the native side walks the calling thread's stack).

Rules kept here:

- the program's output is never changed: the stream's own ``write`` is
  called first with the very same argument, and its return value (or its
  exception) is what the caller gets;
- nothing here raises into the program: recording errors are swallowed;
- a logging call's own handler output (a StreamHandler writing to stderr)
  is not recorded a second time: a thread-local guard is set while a
  record is being handled;
- ``uninstall()`` puts back exactly what ``install()`` replaced;
- importing microlog imports neither ``logging`` nor ``threading`` (they
  cost milliseconds of start-up): when the program has not imported
  ``logging`` yet, a finder on ``sys.meta_path`` hooks it the moment the
  program does.
"""

from __future__ import annotations

import _thread
import sys

TYPE_CHECKING = False  # annotations only: typing is not imported at run time
if TYPE_CHECKING:
    import logging
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

    class NativeLog(Protocol):
        """The part of microlog._native used here."""

        LOG_STDOUT: int
        LOG_STDERR: int
        LOG_LOGGING: int

        def log(self, kind: int, level: int, message: str, logger: Optional[str] = None) -> bool:
            """Records one event with the calling thread's stack."""


# A partial line longer than this is recorded as it is (progress bars
# rewrite one line with "\r" for ever).
MAX_PARTIAL = 64 * 1024


class _Guard(_thread._local):  # pylint: disable=protected-access
    """Per-thread depth of logging calls being handled."""

    depth = 0


class StreamTap:
    """Records the lines written through one stream's ``write``."""

    def __init__(self, stream: Any, kind: int, native: NativeLog, guard: _Guard) -> None:
        self.stream = stream
        self.kind = kind
        self.native = native
        self.guard = guard
        self.active = False
        # What ``stream.write`` was before: an attribute of the instance
        # (someone patched it already) or the class's method.
        self.had_instance_write = "write" in getattr(stream, "__dict__", {})
        self.original_write: Callable[[Any], Any] = stream.write
        self.partial: Dict[int, str] = {}  # thread ident -> text after its last newline

    def write(self, *args: Any, **kwargs: Any) -> Any:
        """The stream's write (same arguments, same result, same errors), then
        the line buffer."""
        result = self.original_write(*args, **kwargs)
        if self.active and not self.guard.depth and len(args) == 1 and not kwargs:
            try:
                self._collect(args[0])
            except Exception:  # pylint: disable=broad-except
                pass
        return result

    def _collect(self, text: Any) -> None:
        if not isinstance(text, str) or not text:
            return
        ident = _thread.get_ident()
        buffered = self.partial.pop(ident, "") + text
        if "\n" not in buffered:
            if len(buffered) > MAX_PARTIAL:
                self._emit(buffered)
            else:
                self.partial[ident] = buffered
            return
        *lines, rest = buffered.split("\n")
        if rest:
            self.partial[ident] = rest
        for line in lines:
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self.native.log(self.kind, 0, line)

    def flush_partial(self) -> None:
        """Records what is left after the last newline of every thread."""
        for ident in list(self.partial):
            rest = self.partial.pop(ident, "")
            try:
                self._emit(rest)
            except Exception:  # pylint: disable=broad-except
                pass

    def install(self) -> bool:
        """Routes the stream's writes through this tap; False if it cannot."""
        try:
            self.stream.write = self.write
        except (AttributeError, TypeError):
            return False
        self.active = True
        return True

    def uninstall(self) -> None:
        """Restores the stream's write as it was (unless replaced since)."""
        self.active = False
        self.partial.clear()
        current = getattr(self.stream, "__dict__", {}).get("write")
        if current != self.write:
            return  # patched again after us: leave it; this tap now only passes through
        try:
            if self.had_instance_write:
                self.stream.write = self.original_write
            else:
                del self.stream.write
        except (AttributeError, TypeError):
            pass


def record_message(record: logging.LogRecord) -> str:
    """The record's message as a handler would show it, with its traceback."""
    import logging  # pylint: disable=import-outside-toplevel,redefined-outer-name  # loaded: a record exists
    try:
        message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
        message = str(record.msg)
    extra: List[str] = []
    if record.exc_text:
        extra.append(record.exc_text)
    elif record.exc_info:
        try:
            extra.append(logging.Formatter().formatException(record.exc_info))
        except Exception:  # pylint: disable=broad-except
            pass
    if record.stack_info:
        extra.append(record.stack_info)
    return "\n".join([message, *extra])


class Capture:
    """Output and logging capture of one run."""

    def __init__(self, native: NativeLog) -> None:
        self.native = native
        self.guard = _Guard()
        self.taps: List[StreamTap] = []
        self.original_call_handlers: Optional[Callable[..., Any]] = None
        self.installed_call_handlers: Optional[Callable[..., Any]] = None
        self.logging_finder: Optional[_LoggingFinder] = None
        self.active = False

    def install(self) -> None:
        """Starts capturing sys.stdout, sys.stderr and logging."""
        for name, kind in (("stdout", self.native.LOG_STDOUT), ("stderr", self.native.LOG_STDERR)):
            stream = getattr(sys, name, None)
            if stream is None or any(tap.stream is stream for tap in self.taps):
                continue  # no stream, or stdout and stderr are one object
            try:
                tap = StreamTap(stream, kind, self.native, self.guard)
            except Exception:  # pylint: disable=broad-except
                continue
            if tap.install():
                self.taps.append(tap)
        self._install_logging()
        self.active = True

    def _install_logging(self) -> None:
        logging = sys.modules.get("logging")  # pylint: disable=redefined-outer-name
        if logging is None or not hasattr(logging, "Logger"):
            # Not imported yet (or being imported): hook it when the program imports it.
            if self.logging_finder is None:
                self.logging_finder = _LoggingFinder(self)
                sys.meta_path.insert(0, self.logging_finder)
            return
        original = logging.Logger.__dict__.get("callHandlers")
        if original is None:
            return
        capture = self

        def callHandlers(logger: logging.Logger, record: logging.LogRecord) -> Any:  # noqa: N802
            """microlog: records the record once, then the original callHandlers."""
            if capture.active and not capture.guard.depth:
                try:
                    capture.native.log(
                        capture.native.LOG_LOGGING,
                        record.levelno,
                        record_message(record),
                        record.name,
                    )
                except Exception:  # pylint: disable=broad-except
                    pass
            capture.guard.depth += 1
            try:
                return original(logger, record)
            finally:
                capture.guard.depth -= 1

        callHandlers.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(logging.Logger, "callHandlers", callHandlers)
        self.original_call_handlers = original
        self.installed_call_handlers = callHandlers

    def flush(self) -> None:
        """Records every partial line still buffered (the end of the run)."""
        for tap in self.taps:
            tap.flush_partial()

    def uninstall(self) -> None:
        """Stops capturing and restores streams and logging exactly."""
        self.active = False
        for tap in self.taps:
            tap.uninstall()
        self.taps = []
        if self.logging_finder is not None:
            self.logging_finder.remove()
            self.logging_finder = None
        logging = sys.modules.get("logging")  # pylint: disable=redefined-outer-name
        if self.original_call_handlers is not None and logging is not None:
            if logging.Logger.__dict__.get("callHandlers") is self.installed_call_handlers:
                setattr(logging.Logger, "callHandlers", self.original_call_handlers)
            self.original_call_handlers = None


class _LoggingFinder:
    """On sys.meta_path while logging is not imported: lets the normal finders
    find it, then installs the capture right after the module has run."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.searching = False

    def remove(self) -> None:
        """Takes the finder off sys.meta_path (idempotent)."""
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def find_spec(
        self, name: str, path: Optional[Sequence[str]] = None, target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        """The spec of logging as the other finders give it, its loader wrapped."""
        if name != "logging" or self.searching:
            return None
        self.searching = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        except Exception:  # pylint: disable=broad-except
            return None
        finally:
            self.searching = False
        self.remove()
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _HookedLoader(loader, self.capture)
        return spec


class _HookedLoader:
    """Delegates to the real loader; after logging has run, hooks it."""

    def __init__(self, loader: Any, capture: Capture) -> None:
        self.loader = loader
        self.capture = capture

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        """As the real loader."""
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        """Runs logging, then installs the capture if the run is still on."""
        self.loader.exec_module(module)
        # reload() and friends see the real loader from now on.
        module.__loader__ = self.loader
        module.__spec__.loader = self.loader
        if self.capture.active and self.capture.original_call_handlers is None:
            try:
                self.capture._install_logging()  # pylint: disable=protected-access
            except Exception:  # pylint: disable=broad-except
                pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)
