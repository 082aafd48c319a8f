"""Recording of child processes, started by microlog.pth.

A recording program exports MICROLOG_CHILD=1 (with MICROLOG_ID, its run,
and MICROLOG_APPLICATION, its label). Every Python process started from it
whose site-packages holds microlog.pth (the wheel installs it there) imports
this module while the interpreter starts, and records itself as a run of its
own: label "<parent label>-<child program>", parent_id the parent's run.
Processes without MICROLOG_CHILD pay one dictionary lookup in the .pth line.
The child's output is unchanged (no box at its end); MICROLOG_CHILDREN=false
in the parent turns this off.
"""

from __future__ import annotations

import os
import sys


def start_if_asked() -> bool:
    """Starts the child's run when the parent asked for it; True if started."""
    if os.environ.get("MICROLOG_CHILD") != "1":
        return False
    if getattr(sys, "orig_argv", [])[1:3] == ["-m", "microlog"]:
        return False  # `python -m microlog LABEL ...` records under its own label
    try:
        from microlog import api  # pylint: disable=import-outside-toplevel

        parent = os.environ.get("MICROLOG_APPLICATION", "")
        name = api.get_application()
        api._singleton.start_run(  # pylint: disable=protected-access
            f"{parent}-{name}" if parent else name, quiet=True
        )
        return api.is_running()
    except Exception:  # pylint: disable=broad-except
        return False  # never stop the child from starting


start_if_asked()
