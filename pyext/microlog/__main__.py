"""Microlog command-line interface.

    python -m microlog LABEL script.py [args...]
    python -m microlog LABEL -m module [args...]

Runs the target as __main__ while recording it (a script file as Python
itself does, a module, directory or zip through runpy). The program behaves as if
started by Python itself: same sys.argv, sys.path[0], output, uncaught
exception traceback and exit status. The recording is ended (stop) before
the process exits, after the program's non-daemon threads have finished.
"""

from __future__ import annotations

import _frozen_importlib_external  # what importlib.machinery re-exports, already loaded
import builtins
import io
import os
import sys

from microlog import api

# runpy, importlib.util, importlib.machinery, types, zipfile, signal,
# threading and typing are imported only when needed: each costs up to
# milliseconds and `python -m microlog` must add little to the program's
# start-up (tests/bench/bench_startup.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Callable, List, NoReturn, Optional

USAGE = """\
usage: python -m microlog LABEL SCRIPT [ARGS...]
   or: python -m microlog LABEL -m MODULE [ARGS...]

Runs SCRIPT (or MODULE) as __main__ and records it under LABEL.
Environment: MICROLOG_SERVER (collector, default http://localhost:7777),
MICROLOG_DISABLE=true (just run the program), TRACER_SAMPLE_DELAY,
TRACER_STATUS_DELAY, TRACER_MEMORY_DELAY (seconds).
"""

EXIT_USAGE = 2
INTERRUPTED = -1  # run(): the program ended with KeyboardInterrupt


def usage(error: str) -> NoReturn:
    """Usage text on stderr, exit status 2."""
    sys.stderr.write(f"microlog: {error}\n{USAGE}")
    sys.exit(EXIT_USAGE)


def _runner_frame(tb: TracebackType) -> bool:
    """True for frames of microlog itself or runpy, which Python's own run has not."""
    filename = tb.tb_frame.f_code.co_filename
    package = os.path.dirname(os.path.abspath(api.__file__))
    module = tb.tb_frame.f_globals.get("__name__")
    return filename.startswith(package + os.sep) or module == "runpy"


def _report_uncaught(error: BaseException) -> None:
    """Prints an uncaught exception as Python would (through sys.excepthook)."""
    tb = error.__traceback__
    while tb is not None and _runner_frame(tb):
        tb = tb.tb_next
    error.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(error), error, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = error  # pylint: disable=no-member
    try:
        sys.excepthook(type(error), error, tb)
    except Exception:  # pylint: disable=broad-except
        sys.__excepthook__(type(error), error, tb)


def _system_exit_status(error: SystemExit) -> int:
    """The process status Python derives from SystemExit (printing a non-int code)."""
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:  # pylint: disable=broad-except
        pass
    return 1


def _wait_for_threads() -> None:
    """Joins non-daemon threads, as Python does before exiting."""
    threading = sys.modules.get("threading")
    if threading is None:
        return  # never imported: no thread the interpreter would wait for
    while True:
        current = threading.current_thread()
        waiting = [t for t in threading.enumerate() if t is not current and not t.daemon]
        if not waiting:
            return
        for thread in waiting:
            thread.join()


def _target(target: str, args: List[str]) -> Callable[[], object]:
    """Sets sys.argv and sys.path for the target; returns what runs it."""
    if target == "-m":
        import importlib.util  # pylint: disable=import-outside-toplevel
        import runpy  # pylint: disable=import-outside-toplevel

        if not args:
            usage("-m needs a module name")
        module, module_args = args[0], args[1:]
        if importlib.util.find_spec(module) is None:
            sys.stderr.write(f"{sys.executable}: No module named {module}\n")
            sys.exit(1)
        sys.argv = [module] + module_args  # runpy puts the module's file in argv[0]
        return lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)
    path = os.path.abspath(target)
    if not os.path.exists(path):
        sys.stderr.write(
            f"{sys.executable}: can't open file {path!r}: [Errno 2] No such file or directory\n"
        )
        sys.exit(EXIT_USAGE)
    sys.argv = [target] + args
    sys.path[0] = os.path.dirname(path)  # what `python script.py` puts first
    if os.path.isfile(path) and not _is_zip(path):
        return lambda: _run_file(path)
    import runpy  # pylint: disable=import-outside-toplevel

    return lambda: runpy.run_path(path, run_name="__main__")  # a directory or zip with __main__.py


def _is_zip(path: str) -> bool:
    """zipfile.is_zipfile(path), importing zipfile only for a file that holds
    the end-of-central-directory signature where a zip has it (its last
    64 KiB + 22 bytes)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, io.SEEK_END)
            file.seek(max(0, file.tell() - (65536 + 22)))
            if b"PK\x05\x06" not in file.read():
                return False
    except OSError:
        return False
    import zipfile  # pylint: disable=import-outside-toplevel

    return zipfile.is_zipfile(path)


def _run_file(path: str) -> None:
    """Runs a script the way `python script.py` does: a fresh __main__ module
    with an absolute __file__, sys.argv[0] left as typed (runpy.run_path would
    replace it), and the module left in sys.modules for atexit and pickle."""
    with io.open_code(path) as file:
        source = file.read()
    code = compile(source, path, "exec", dont_inherit=True)
    module = type(sys)("__main__")  # types.ModuleType
    module.__dict__.update(
        __file__=path,
        __cached__=None,
        __loader__=_frozen_importlib_external.SourceFileLoader("__main__", path),
        __builtins__=builtins,
    )
    sys.modules["__main__"] = module
    exec(code, module.__dict__)  # pylint: disable=exec-used


def run(label: str, target: str, args: List[str]) -> int:
    """Runs the target under a recording; returns its exit status."""
    api.launch_argv = ["-m", "microlog", label, target, *args]
    runner = _target(target, args)
    api.start(label)
    status = 0
    try:
        runner()
    except SystemExit as error:
        status = _system_exit_status(error)
    except KeyboardInterrupt as error:
        _report_uncaught(error)
        status = INTERRUPTED
    except BaseException as error:  # pylint: disable=broad-except
        _report_uncaught(error)
        status = 1
    try:
        _wait_for_threads()
    except KeyboardInterrupt:
        status = INTERRUPTED
    api._singleton.finish(130 if status == INTERRUPTED else status)  # pylint: disable=protected-access
    return status


def _exit(status: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # pylint: disable=broad-except
            pass
    if status == INTERRUPTED:
        # Python ends a program killed by Ctrl-C with SIGINT itself.
        import signal  # pylint: disable=import-outside-toplevel

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(status)


def main(argv: Optional[List[str]] = None) -> NoReturn:
    """Entry point for command-line usage."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        sys.exit(0)
    if len(argv) < 2:
        usage("a label and a script (or -m module) are required")
    if argv[0].startswith("-"):
        usage(f"the first argument is the label, not an option: {argv[0]!r}")
    _exit(run(argv[0], argv[1], argv[2:]))


if __name__ == "__main__":
    main()
