"""`python -m microlog LABEL script|-m module args...` keeps the program's
behaviour: output, traceback, exit status, argv, path, __main__."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from conftest import child_env, strip_microlog


def _both(runner, script, args=(), env=None):
    """Runs a script plainly and under microlog; returns both results."""
    plain = runner.run([str(script), *args], env=env)
    profiled = runner.run(["-m", "microlog", "cli-test", str(script), *args], env=env)
    return plain, profiled


def _same(plain, profiled):
    assert profiled.returncode == plain.returncode
    assert profiled.stdout == plain.stdout
    assert strip_microlog(profiled.stderr.decode()) == plain.stderr.decode()


def test_uncaught_exception_prints_the_normal_traceback(runner):
    script = runner.script(
        """
        def fail(x):
            raise ValueError(f"bad value {x}")

        print("before")
        fail(42)
        """
    )
    plain, profiled = _both(runner, script)
    assert plain.returncode == 1
    assert b"ValueError: bad value 42" in plain.stderr
    _same(plain, profiled)


def test_exception_chain_and_custom_excepthook(runner):
    script = runner.script(
        """
        import sys
        def hook(t, v, tb):
            print("hook:", t.__name__, v, file=sys.stderr)
        sys.excepthook = hook
        try:
            {}["k"]
        except KeyError as e:
            raise RuntimeError("wrapped") from e
        """
    )
    _same(*_both(runner, script))


@pytest.mark.parametrize("code,status", [("sys.exit(3)", 3), ("sys.exit(0)", 0), ("sys.exit()", 0),
                                         ("sys.exit('fatal: message')", 1), ("sys.exit(True)", 1),
                                         ("raise SystemExit(7)", 7), ("pass", 0)])
def test_exit_status(runner, code, status):
    script = runner.script(f"import sys\nprint('out')\n{code}\n")
    plain, profiled = _both(runner, script)
    assert plain.returncode == status
    _same(plain, profiled)


def test_argv_path_and_main(runner):
    script = runner.script(
        """
        import os, sys
        print(sys.argv)
        print(sys.path[0] == os.path.dirname(os.path.abspath(__file__)))
        print(__name__, os.path.isabs(__file__), os.path.basename(__file__))
        import helper
        print(helper.VALUE)
        """,
        name="sub/prog.py",
    )
    runner.script("VALUE = 'helper from the script dir'\n", name="sub/helper.py")
    plain, profiled = _both(runner, "sub/prog.py", ["a", "--b", "c d"])
    assert plain.returncode == 0, plain.stderr
    assert b"['sub/prog.py', 'a', '--b', 'c d']" in plain.stdout
    _same(plain, profiled)


def test_module_mode(runner):
    runner.script("", name="pkg/__init__.py")
    runner.script(
        """
        import sys
        print("module", __name__, sys.argv[1:], sys.argv[0].endswith("tool.py"))
        sys.exit(4)
        """,
        name="pkg/tool.py",
    )
    plain = runner.run(["-m", "pkg.tool", "x", "-y"])
    profiled = runner.run(["-m", "microlog", "cli-mod", "-m", "pkg.tool", "x", "-y"])
    assert plain.returncode == 4
    assert plain.stdout == b"module __main__ ['x', '-y'] True\n"
    _same(plain, profiled)


def test_missing_module(runner):
    result = runner.run(["-m", "microlog", "lbl", "-m", "no_such_module_xyz"])
    assert result.returncode == 1
    assert b"No module named no_such_module_xyz" in result.stderr


@pytest.mark.parametrize("args", [[], ["only-label"], ["lbl", "-m"], ["-x", "prog.py"]])
def test_usage_errors_exit_2(runner, args):
    result = runner.run(["-m", "microlog", *args])
    assert result.returncode == 2
    assert b"usage: python -m microlog LABEL SCRIPT" in result.stderr
    assert result.stdout == b""


def test_missing_script_exits_2(runner):
    result = runner.run(["-m", "microlog", "lbl", "does_not_exist.py"])
    assert result.returncode == 2
    assert b"can't open file" in result.stderr


def test_non_daemon_threads_finish_before_the_recording_ends(runner):
    script = runner.script(
        """
        import threading, time
        def late():
            time.sleep(0.3)
            print("late thread done")
        threading.Thread(target=late).start()
        print("main done")
        """
    )
    plain, profiled = _both(runner, script)
    assert plain.stdout == b"main done\nlate thread done\n"
    _same(plain, profiled)


def test_keyboard_interrupt_ends_like_python(runner):
    script = runner.script("raise KeyboardInterrupt\n")
    plain, profiled = _both(runner, script)
    assert plain.returncode == -signal.SIGINT
    _same(plain, profiled)


def test_disabled_just_runs_the_script(runner):
    script = runner.script(
        """
        import microlog, sys
        microlog.start("inner")
        print("running:", microlog.is_running())
        sys.stderr.write("err line\\n")
        sys.exit(5)
        """
    )
    env = child_env(MICROLOG_DISABLE="true")
    plain, profiled = _both(runner, script, env=env)
    assert plain.stdout == b"running: False\n"
    assert profiled.returncode == 5
    assert profiled.stdout == plain.stdout
    assert profiled.stderr == plain.stderr  # not even a warning line


def test_console_entry_point_main_is_importable():
    import microlog  # pylint: disable=import-outside-toplevel

    assert callable(microlog.main)


def test_syntax_error_like_python(runner):
    script = runner.script("print('never')\ndef broken(:\n    pass\n")
    plain, profiled = _both(runner, script)
    assert plain.returncode == 1 and b"SyntaxError" in plain.stderr
    _same(plain, profiled)


def test_main_module_is_the_script(runner):
    script = runner.script(
        """
        import atexit, pickle, sys
        import __main__
        class Point:
            pass
        print(__main__.__file__ == __file__, sys.modules["__main__"] is __main__)
        print(type(pickle.loads(pickle.dumps(Point()))).__name__)
        atexit.register(lambda: print("user atexit ran"))
        """
    )
    plain, profiled = _both(runner, script)
    assert plain.stdout == b"True True\nPoint\nuser atexit ran\n"
    _same(plain, profiled)


def test_directory_with_main(runner):
    runner.script("import sys\nprint('dir main', sys.argv[1:])\n", name="app/__main__.py")
    plain, profiled = _both(runner, "app", ["z"])
    assert plain.stdout == b"dir main ['z']\n"
    _same(plain, profiled)
