"""Fault injection for tests: crash this process at a named point of a build, once.

When ``$GROUPARROW_FAULTS`` names a JSON file holding a list of points (``["map:1",
"reduce:0"]``), the first process to reach one of them records it (a ``<file>.<point>.done``
file beside the list) and exits at once with status 77, as a killed worker would; later
attempts pass. Without the variable (always, outside tests) :func:`point` costs one
environment lookup.

Example:
    >>> point("map:0")  # no $GROUPARROW_FAULTS: nothing happens
"""

from __future__ import annotations

import json
import os

EXIT_STATUS = 77


def point(name: str) -> None:
    """Crash here (``os._exit``) if ``name`` is listed and has not crashed before."""
    spec = os.environ.get("GROUPARROW_FAULTS")
    if not spec or not os.path.exists(spec):
        return
    with open(spec, encoding="utf-8") as f:
        points = json.load(f)
    if name not in points:
        return
    done = f"{spec}.{name.replace(':', '-')}.done"
    try:
        fd = os.open(done, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(EXIT_STATUS)
