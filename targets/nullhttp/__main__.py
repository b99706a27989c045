"""``python -m targets.nullhttp``: see :mod:`targets.nullhttp.server`."""

from __future__ import annotations

import sys

from targets.nullhttp.server import main

sys.exit(main())
