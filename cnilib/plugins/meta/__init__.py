"""Meta plugins: the chained ones that act on ``prevResult`` (Go ``plugins/meta``).

``tuning``, ``portmap``, ``bandwidth``, ``firewall`` and ``sbr``. Each module
is imported on its own by the plugin registry, so this package imports nothing.
"""

__all__: list[str] = []
