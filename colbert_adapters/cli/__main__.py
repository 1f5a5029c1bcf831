"""``python -m colbert_adapters.cli``: the ``colbert-adapters`` command line."""

import sys

from . import main

sys.exit(main())
