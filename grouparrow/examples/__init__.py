"""Small public-domain datasets shipped with grouparrow, for demos and first steps.

Example:
    >>> import grouparrow as ga
    >>> path = ga.examples.path("shakespeare")
    >>> path.endswith("shakespeare.jsonl")
    True
"""

from __future__ import annotations

from importlib import resources

#: name -> (file, description, natural key column)
EXAMPLES = {
    "shakespeare": (
        "shakespeare.jsonl",
        "600 spoken lines from four Shakespeare plays (public domain): play, speaker, "
        "line_number, text",
        "speaker",
    ),
}


def path(name: str) -> str:
    """The local path of the example dataset ``name`` (see :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"no example named {name!r}; examples: {', '.join(EXAMPLES)}")
    return str(resources.files(__name__) / EXAMPLES[name][0])
