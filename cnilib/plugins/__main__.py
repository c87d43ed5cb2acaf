"""``python -m cnilib.plugins install DIR``."""

from cnilib.plugins._main import cli

raise SystemExit(cli())
