"""Start and stop from code, as in a notebook, and the context manager form."""

import time

import microlog


def slow_step(seconds: float) -> None:
    time.sleep(seconds)


def main() -> None:
    microlog.start("microlog-start-stop")
    microlog.print("first cell")
    slow_step(0.2)
    microlog.stop()

    with microlog.enabled("microlog-enabled"):
        microlog.print("inside the context manager")
        slow_step(0.1)


if __name__ == "__main__":
    main()
