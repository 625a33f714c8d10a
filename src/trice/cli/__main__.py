"""``python -m trice.cli``: the ``trice`` command (as ``torchrun -m trice.cli train ...`` runs it)."""

import sys

from . import main

sys.exit(main())
