"""``python -m grouparrow``: the same as the ``grouparrow`` command."""

import sys

from grouparrow.cli import main

sys.exit(main())
