"""A parent that starts a child process; the child's run links to the parent's."""

import os
import subprocess
import sys


def main() -> None:
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hello.py")
    print("parent: starting child")
    subprocess.run([sys.executable, "-m", "microlog", "microlog-child", child], check=True)
    print("parent: child finished")


if __name__ == "__main__":
    main()
