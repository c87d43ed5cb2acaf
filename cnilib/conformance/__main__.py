"""``python -m cnilib.conformance [options] TYPE [TYPE ...]``."""

from cnilib.conformance._cli import main

raise SystemExit(main())
