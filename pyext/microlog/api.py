"""The public API: start(), stop(), is_running(), enabled(...), print(...).

These keep the names and behaviour of the original microlog; the work is
done by microlog._native (sampler, log recorder, client). One run at a
time per process; start() and stop() are thread-safe and idempotent.
"""

from __future__ import annotations

import _thread
import atexit
import gc
import os
import sys
import time

# Nothing here imports typing, threading, uuid or logging: `python -m
# microlog` must add little to the program's start-up (tests/bench/bench_startup.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Type

from microlog import _native
from microlog import analysis as _analysis
from microlog import capture as _capture
from microlog import config

__version__ = "0.1.0"

CLOSE_TIMEOUT = 2.0  # seconds stop() waits for the collector's acknowledgements

# The command line that started the process when `python -m microlog` rewrote
# sys.argv for the program it runs (set by microlog.__main__).
launch_argv: Optional[List[str]] = None


def _gc_install() -> None:
    """Counts collections through a callback written in C (a Python one would
    run bytecode inside whatever allocation triggered the collection)."""
    if _native.gc_callback not in gc.callbacks:
        gc.callbacks.append(_native.gc_callback)


def _gc_uninstall() -> None:
    while _native.gc_callback in gc.callbacks:
        gc.callbacks.remove(_native.gc_callback)


def gc_report(stats: Dict[str, Any], elapsed: float) -> str:
    """The original's "GC Statistics" section, in markdown."""
    count, duration = stats["count"], stats["duration"]
    times = "once" if count == 1 else f"{count} times"
    percentage = duration / elapsed * 100 if elapsed > 0 else 0.0
    average = duration / count if count else 0.0
    uncollectable = (
        f"A total of {stats['uncollectable']:,} objects were leaked (uncollectable) during runtime."
        if stats["uncollectable"]
        else ""
    )
    return (
        "\n# General Statistics\n# GC Statistics\n"
        f"GC ran {times} for {duration:0.3f}s ({percentage:0.1f}% of {elapsed:.3f}s),\n"
        f"averaging {average:.3f}s per collection.\n"
        f"In total, {stats['collected']:,} objects were collected.\n"
        f"{uncollectable}\n"
    )


def sampler_report(stats: Optional[Dict[str, Any]]) -> str:
    """The sampler's own cost, as it measured it, in markdown."""
    if not stats:
        return ""
    return (
        "\n# Sampler\n"
        f"Mode: {stats['mode']}; {stats['fast_passes']:,} GIL-free passes, "
        f"{stats['gil_passes']:,} passes with the GIL; {stats.get('deferred', 0):,} thread samples "
        f"waited for new code to be learnt ({stats.get('learnt_pending', 0):,} taken by the main "
        f"thread, {stats.get('deferred_by_gil', 0):,} by a GIL pass); "
        f"{stats.get('gil_status', 0):,} passes took the GIL only for a status tick.\n"
        f"Consistent stacks: {stats.get('walk_retries', 0):,} walks were read again "
        f"(a thread moved while it was read), {stats.get('walk_torn', 0):,} thread samples "
        f"were left to the GIL path (no consistent walk), {stats.get('deferred_lost', 0):,} "
        f"samples dropped; {stats.get('unguarded_passes', 0):,} passes read frames with "
        "process_vm_readv (the fault guard was not installed).\n"
        f"Sampler CPU: {stats['cpu_per_s'] * 1000:.2f} ms per second of run; "
        f"GIL held: {stats['gil_held_per_s'] * 1000:.3f} ms per second; "
        f"median walk of one thread: {stats['walk_median_us']:.2f} µs.\n"
    )


def is_sensitive_key(key: str) -> bool:
    """Determine if an environment variable contains sensitive information"""
    sensitive_keywords: List[str] = [
        "activation_code", "api_key", "apikey", "auth", "bearer", "cert",
        "askpass", "token", "cloud_key", "cloudkey",
        "logname", "username", "path", "user", "userid", "user_id",
        "home", "pythonstartup", "uv", "virtual_env", "virtualenv",
        "certificate", "connection_string", "cookie", "cred", "credential",
        "database_url", "dsn", "hash", "jwt", "key", "nonce", "oauth", "passwd",
        "password", "private", "pwd", "salt", "secret", "serial", "session",
        "signature", "token", "webhook",
    ]  # fmt: skip
    key_lower: str = key.lower()
    return any(keyword in key_lower for keyword in sensitive_keywords)


def format_sensitive(key: str, value: str) -> str:
    """The value, or as many stars when the key looks secret."""
    if is_sensitive_key(key):
        return "*" * len(value)
    return value


def get_safe_environment() -> Dict[str, str]:
    """Environment variables with sensitive values masked."""
    return {key: format_sensitive(key, value) for key, value in os.environ.items()}


def get_application() -> str:
    """A short name for the running program, derived from sys.argv as the original does."""
    argv = sys.argv or [""]
    name = argv[0] or "python"
    if name == "-c":
        name = "python"
    if name == "-m" and len(argv) > 1:
        name = argv[1]
    name = "-".join(name.split("/")[-3:])
    name = name.replace("python-site-packages-", "").replace(".py", "")
    name = name.replace("python3 -m ", "")
    name = name.replace("python -m ", "")
    return name


def print_in_block(message: str) -> None:
    """The original's box around a message, written to stderr so stdout stays the program's."""
    stream = sys.stderr or sys.__stderr__
    if stream is None:
        return
    try:
        stream.write(f"┏{'━' * (len(message) + 2)}┓\n")
        stream.write(f"┃ {message} ┃\n")
        stream.write(f"┗{'━' * (len(message) + 2)}┛\n")
        stream.flush()
    except Exception:  # pylint: disable=broad-except
        pass


def _environment_markdown(application: str, parent_id: str, run_uid: str) -> str:
    lines = [
        "## Microlog",
        f" - application: {application}",
        f" - Microlog ID: {run_uid}",
        f" - Microlog Parent ID: {parent_id}",
        f" - Python version: {sys.version}",
        "## Command line",
        f"{sys.executable} {' '.join(launch_argv or sys.argv)}",
        "## Environment",
    ] + [f" - {key}: {value}" for key, value in get_safe_environment().items()]
    return "\n".join(lines)


def _exit_status_guess() -> int:
    """At exit without an explicit status: 1 if an uncaught exception ended the program."""
    value = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return 1 if value is not None and not isinstance(value, SystemExit) else 0


class _Microlog:
    """Singleton class to manage Microlog state."""

    def __init__(self) -> None:
        self.running: bool = False
        self.lock = _thread.RLock()
        self.config: Optional[config.Config] = None
        self.capture: Optional[_capture.Capture] = None
        self.started: float = 0.0
        self.atexit_registered = False
        self.last_result: Optional[Dict[str, Any]] = None
        self.application: str = ""
        self.quiet = False
        self.open_files: Optional[_analysis.OpenFiles] = None
        self.exported_child = False  # start() set MICROLOG_CHILD; finish() takes it back

    def is_running(self) -> bool:
        """Check if Microlog is currently running."""
        return self.running

    def start(self, application: str = "") -> None:
        """Start Microlog logging for the application."""
        self.start_run(application)

    def start_run(self, application: str = "", spool_only: bool = False, quiet: bool = False) -> None:
        """start(), with what child processes need: spool_only never uses the
        network (the run goes to the local spool: a forked child); quiet
        prints nothing at the end (no box)."""
        with self.lock:
            if config.is_disabled() or self.running:
                return
            cfg = config.load(stream=sys.stderr)
            application = application or get_application()
            parent_id = os.environ.get("MICROLOG_ID", "")
            run_uid = os.urandom(16).hex()  # as uuid4().hex, without importing uuid
            os.environ["MICROLOG_PARENT_ID"] = parent_id
            os.environ["MICROLOG_ID"] = run_uid
            os.environ["MICROLOG_VERSION"] = __version__
            env = get_safe_environment()
            options = {
                "server": cfg.server,
                "run_uid": run_uid,
                "parent_id": parent_id,
                "argv": [str(arg) for arg in sys.argv],
                "executable": sys.executable or "",
                "python_version": sys.version,
                "sample_period": cfg.sample_period,
                "status_period": cfg.status_period,
                "memory_period": cfg.memory_period,
                "env_keys": list(env.keys()),
                "env_values": list(env.values()),
                # "gil" forces the GIL sampling path (the fallback), for tests and benchmarks.
                "sampler": os.environ.get("MICROLOG_SAMPLER", "auto"),
                "spool_only": spool_only,
                # A child's output is the program's: no "spooled" notice in it.
                "quiet": spool_only or quiet,
            }
            # Before the native threads start: setenv() of a new name moves the
            # environment, and getenv() on another thread (libcurl, loaded by
            # the sender thread, and the libraries it pulls in) could read it
            # freed.
            self._export_for_children(application)
            try:
                _native.start(application, options)
            except Exception as error:  # pylint: disable=broad-except
                self._unexport_children()
                config.warn(f"could not start recording: {error}", sys.stderr)
                return
            self.running = True
            self.application = application
            self.quiet = spool_only or quiet
            self.config = cfg
            self.started = time.perf_counter()
            _gc_install()
            self.open_files = _analysis.OpenFiles()
            self.open_files.start()
            self.capture = _capture.Capture(_native)
            self.capture.install()
            _native.log(
                _native.LOG_ANALYSIS, 0, _environment_markdown(application, parent_id, run_uid)
            )
            if not self.atexit_registered:
                atexit.register(self._stop_at_exit)
                self.atexit_registered = True
            self._catch_sigterm()

    def _catch_sigterm(self) -> None:
        """SIGTERM with its default action would end the process before the
        run is delivered: while recording, a handler in C closes the run
        (bounded wait, then spool) and the process dies of SIGTERM as it
        would have. A handler of the program's own is left alone; one the
        program installs later replaces ours (pyext/src/sigterm.c)."""
        try:
            _native.catch_sigterm(CLOSE_TIMEOUT)
        except OSError:
            pass

    def _export_for_children(self, application: str) -> None:
        """Asks child processes to record themselves (microlog.pth, _child.py),
        unless MICROLOG_CHILDREN=false."""
        if os.environ.get("MICROLOG_CHILDREN", "true").strip().lower() == "false":
            return
        os.environ["MICROLOG_APPLICATION"] = application
        if os.environ.get("MICROLOG_CHILD") != "1":
            os.environ["MICROLOG_CHILD"] = "1"
            self.exported_child = True

    def _unexport_children(self) -> None:
        """start() failed: later children are not recorded."""
        if self.exported_child:
            os.environ.pop("MICROLOG_CHILD", None)
            self.exported_child = False

    def stop(self) -> None:
        """Stop Microlog logging and deliver the recording."""
        self.finish(0)

    def finish(self, exit_status: int, timeout: float = CLOSE_TIMEOUT) -> Optional[Dict[str, Any]]:
        """Ends the run with exit_status; returns the native result (None if not running)."""
        with self.lock:
            if not self.running:
                return None
            self.running = False
            try:
                _native.stop_sampler()
                if self.capture is not None:
                    self.capture.flush()
                elapsed = time.perf_counter() - self.started
                _native.log(_native.LOG_ANALYSIS, 0, gc_report(_native.gc_stats(), elapsed))
                for section in self._analysis_sections():
                    if section:
                        _native.log(_native.LOG_ANALYSIS, 0, section)
                _native.log(_native.LOG_ANALYSIS, 0, sampler_report(_native.sampler_stats()))
            finally:
                # Whatever failed above, the program gets its streams back.
                _gc_uninstall()
                if self.capture is not None:
                    self.capture.uninstall()
                    self.capture = None
            if self.exported_child:
                os.environ.pop("MICROLOG_CHILD", None)  # later children are not recorded
                self.exported_child = False
            result = _native.stop(exit_status, timeout)
            self.last_result = result
            if result is not None and result.get("native_errors"):
                # The sampler and log paths never raise; what they missed is told once here.
                config.warn(
                    f"{result['native_errors']} samples or events could not be recorded",
                    sys.stderr,
                )
            if (
                result is not None
                and result.get("delivered")
                and self.config is not None
                and not self.quiet
            ):
                print_in_block(f"Microlog: {self.config.server}/#{result['run_id']}")
            return result

    def _analysis_sections(self) -> List[str]:
        """Leaks and unclosed files; a failure of one loses only that section."""
        sections = []
        for make in (_analysis.leaks_report, self._open_files_report):
            try:
                sections.append(make())
            except Exception:  # pylint: disable=broad-except
                pass
        return sections

    def _open_files_report(self) -> str:
        tracker, self.open_files = self.open_files, None
        return tracker.stop() if tracker is not None else ""

    def _stop_at_exit(self) -> None:
        try:
            self.finish(_exit_status_guess())
        except Exception:  # pylint: disable=broad-except
            pass

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's run is not ours; drop it without I/O."""
        self.lock = _thread.RLock()  # may have been held by a thread that does not exist here
        if self.capture is not None:
            self.capture.uninstall()
            self.capture = None
        _gc_uninstall()
        if self.open_files is not None:
            self.open_files.forget()
            self.open_files = None
        self.running = False


_singleton: _Microlog = _Microlog()

start = _singleton.start
is_running = _singleton.is_running
stop = _singleton.stop


def print(*args: Any) -> None:  # pylint: disable=redefined-builtin
    """Records an explicit marker in the log (it does not write to the terminal)."""
    if _singleton.running:
        _native.log(_native.LOG_MARKER, 0, " ".join(str(arg) for arg in args))


class enabled:  # pylint: disable=invalid-name
    """Context manager to enable Microlog logging within a block."""

    def __init__(self, *args: Any, **argv: Any) -> None:
        self.args: tuple[Any, ...] = args
        self.argv: Dict[str, Any] = argv

    def __enter__(self) -> "enabled":
        start(*self.args, **self.argv)
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        stop()


FORK_CHILD_SUFFIX = "-fork"


def _exit_recording_child(real_exit: Callable[[int], NoReturn]) -> Callable[[int], NoReturn]:
    """os._exit for a forked child that records: ends its run first (a
    local spool write), since os._exit runs no atexit handler and
    multiprocessing's fork children end with it."""

    def _exit(status: int) -> NoReturn:
        try:
            _singleton.finish(status, timeout=CHILD_CLOSE_TIMEOUT)
        except BaseException:  # pylint: disable=broad-except
            pass
        real_exit(status)

    _exit.__wrapped__ = real_exit  # type: ignore[attr-defined]
    return _exit


CHILD_CLOSE_TIMEOUT = 1.0  # seconds; a spool-only run writes a local file


def _after_fork_in_child() -> None:
    recording = _singleton.running
    application = _singleton.application
    _native.after_fork_child()
    _singleton.forget_after_fork()
    if not recording or os.environ.get("MICROLOG_CHILDREN", "true").strip().lower() == "false":
        return
    # The child is a run of its own, linked to the parent's (MICROLOG_ID is
    # the parent's run, so start() makes it the parent id). nng cannot be used
    # after fork(): the run goes to the spool, which the collector imports.
    try:
        _singleton.start_run(application + FORK_CHILD_SUFFIX, spool_only=True)
    except Exception:  # pylint: disable=broad-except
        return
    if _singleton.running and not hasattr(os._exit, "__wrapped__"):
        os._exit = _exit_recording_child(os._exit)  # type: ignore[assignment]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_native.before_fork,
        after_in_parent=_native.after_fork_parent,
        after_in_child=_after_fork_in_child,
    )
