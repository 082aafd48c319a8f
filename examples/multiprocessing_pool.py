"""Multiprocessing: a pool of processes, each a child run linked to this one."""

import multiprocessing


def square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


def main() -> None:
    with multiprocessing.Pool(2) as pool:
        results = pool.map(square_sum, [200_000, 300_000, 400_000, 500_000])
    print("results:", results)


if __name__ == "__main__":
    main()
