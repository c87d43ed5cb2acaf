"""Integrations with other libraries, each behind its own extra
(``pip install 'cnilib[prometheus]'``); importing this package imports none of them."""
