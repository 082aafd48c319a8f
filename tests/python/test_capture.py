"""Captured output reaches the terminal unchanged, byte for byte; stop()
restores the streams; capture never raises into the program."""

from __future__ import annotations

from conftest import child_env, strip_microlog

OUTPUT_PROGRAM = r'''
import logging, sys, threading

print("plain line")
print("partial", end="")
print(" ... completed")
print("no newline at all", end="")
print()
print("unicode: h\u00e9llo \u4e16\u754c \U0001F600", "tab\tsep", sep="|")
n = sys.stdout.write("write returns ")
print(n)
print("crlf\r\nline", flush=True)
sys.stdout.writelines(["wl1\n", "wl2", "\n"])
print("to stderr", file=sys.stderr)
sys.stderr.write("stderr partial")
sys.stderr.write(" and rest\n")
print("\n\n\nblank lines above\n")

def worker(i):
    for k in range(20):
        print(f"thread {i} line {k}")

threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
for t in threads: t.start()
for t in threads: t.join()

logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
logging.info("info %s", "args")
logging.getLogger("app.sub").warning("warned")
for bad_args in [(b"bytes are refused",), (), ("a", "b")]:
    try:
        sys.stdout.write(*bad_args)
    except TypeError as e:
        print("TypeError kept:", e)
sys.stdout.buffer.write(b"raw bytes\n")
sys.stdout.flush()
print("the end", end="")
'''


def test_output_is_unchanged_byte_for_byte(runner):
    script = runner.script(OUTPUT_PROGRAM)
    plain = runner.run([str(script)])
    profiled = runner.run(["-m", "microlog", "capture", str(script)])
    assert plain.returncode == 0, plain.stderr
    assert profiled.returncode == 0, profiled.stderr
    assert profiled.stdout == plain.stdout
    assert strip_microlog(profiled.stderr.decode()) == plain.stderr.decode()
    assert b"write returns 14\n" in plain.stdout


def test_output_unchanged_with_start_stop_in_the_program(runner):
    program = (
        "import microlog\nmicrolog.start('inline')\n"
        + OUTPUT_PROGRAM
        + "\nmicrolog.stop()\nprint(' after stop')\n"
    )
    plain_program = program.replace("microlog.start('inline')", "pass").replace(
        "microlog.stop()", "pass"
    )
    plain = runner.run([str(runner.script(plain_program, "plain.py"))])
    profiled = runner.run([str(runner.script(program, "profiled.py"))])
    assert profiled.returncode == 0, profiled.stderr
    assert profiled.stdout == plain.stdout
    assert strip_microlog(profiled.stderr.decode()) == plain.stderr.decode()


def test_streams_are_restored_and_not_replaced(runner):
    script = runner.script(
        """
        import logging, sys, microlog
        out, err = sys.stdout, sys.stderr
        before = (dict(vars(out)), dict(vars(err)), logging.Logger.callHandlers)
        microlog.start("restore")
        assert sys.stdout is out and sys.stderr is err
        assert "write" in vars(out)
        microlog.stop()
        after = (dict(vars(out)), dict(vars(err)), logging.Logger.callHandlers)
        print(before == after)
        """
    )
    result = runner.run([str(script)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"True\n"


def test_a_program_that_replaces_stdout_keeps_working(runner):
    script = runner.script(
        """
        import contextlib, io, sys, microlog
        microlog.start("redirect")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            print("into the buffer")
        print("captured:", repr(buf.getvalue()), flush=True)
        sys.stdout.write = lambda s: sys.__stdout__.buffer.write(s.upper().encode()) and len(s)
        print("patched by the program")
        microlog.stop()
        print("after stop")
        """
    )
    result = runner.run([str(script)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        b"captured: 'into the buffer\\n'\nPATCHED BY THE PROGRAM\nAFTER STOP\n"
    )


def test_capture_survives_a_closed_stdout(runner):
    script = runner.script(
        """
        import sys, microlog
        microlog.start("closed")
        sys.stdout.close()
        try:
            print("x")
        except ValueError as e:
            sys.stderr.write(f"ValueError: {e}\\n")
        microlog.stop()
        """
    )
    result = runner.run([str(script)], env=child_env())
    assert result.returncode == 0, result.stderr
    assert "ValueError: I/O operation on closed file." in result.stderr.decode()
