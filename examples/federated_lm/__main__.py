"""``python3 -m examples.federated_lm``: run the FedAvg / FedSGD study (see ``run.main``)."""

from __future__ import annotations

import sys

from examples.federated_lm.run import main

if __name__ == "__main__":
    sys.exit(main())
