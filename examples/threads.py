"""Threads: workers that compute and wait, started and ended during the run."""

import threading
import time


def crunch(n: int) -> int:
    return sum(i * i for i in range(n))


def worker(index: int) -> None:
    for _ in range(3):
        crunch(300_000)
        time.sleep(0.05 * (index + 1))
    print(f"worker {index} finished")


def main() -> None:
    threads = [threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    daemon = threading.Thread(target=lambda: time.sleep(10), name="sleepy-daemon", daemon=True)
    daemon.start()
    for thread in threads:
        thread.join()
    print("all workers done")


if __name__ == "__main__":
    main()
