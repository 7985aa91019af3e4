"""``python -m lzn`` runs the command line (also under torchrun)."""

import sys

from lzn.cli.main import main

sys.exit(main())
