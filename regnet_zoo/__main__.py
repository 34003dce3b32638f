"""``python -m regnet_zoo`` is the ``regnet-zoo`` command."""

import sys

from .cli import main

sys.exit(main())
