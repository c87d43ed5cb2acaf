"""``python -m cnilib.overlay agent|status ...``."""

from cnilib.overlay._cli import main

raise SystemExit(main())
