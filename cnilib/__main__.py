"""``python -m cnilib``."""

from cnilib.cli import main

raise SystemExit(main())
