"""Federated language modelling on grouparrow: FedAvg versus FedSGD, global versus
personalized loss, on Shakespeare speakers (LEAF-style clients) or C4 grouped by URL host.

Run ``python3 -m examples.federated_lm`` from the repository root (``--help`` for the flags);
see ``examples/federated_lm/README.md`` for the study and its results.

Example:
    >>> from examples.federated_lm.run import main
    >>> main(["--rounds", "2", "--out", "/tmp/fedlm"])   # doctest: +SKIP
"""

from __future__ import annotations
