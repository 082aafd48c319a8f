"""Memory: a heap that grows in steps and is released, for the red line."""

import time


def grow(steps: int, size: int) -> list:
    chunks = []
    for step in range(steps):
        chunks.append([object() for _ in range(size)])
        print(f"step {step}: {len(chunks) * size} objects held")
        time.sleep(0.1)
    return chunks


def main() -> None:
    held = grow(10, 200_000)
    del held
    time.sleep(0.3)
    print("released")


if __name__ == "__main__":
    main()
