"""``python -m apipod`` is the ``apipod`` command."""

import sys

from apipod.cli import main

sys.exit(main())
