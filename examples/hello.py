"""Hello: print, logging and sleeps, the smallest program worth profiling."""

import logging
import time

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("hello")


def greet(name: str) -> None:
    print(f"Hello, {name}!")
    time.sleep(0.2)


def compute(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def main() -> None:
    for name in ["world", "Microlog"]:
        greet(name)
    log.info("computed %d", compute(2_000_000))
    log.warning("a warning, with the stack that logged it")
    time.sleep(0.3)
    print("done")


if __name__ == "__main__":
    main()
