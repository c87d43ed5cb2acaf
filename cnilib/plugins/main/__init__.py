"""Main plugins: the ones that make the container's interface (Go ``plugins/main``).

``loopback``, ``bridge``, ``ptp``, ``macvlan``, ``ipvlan``, ``vlan``,
``dummy`` and ``host-device``. Each module is imported on its own by the
plugin registry, so this package imports nothing.
"""

__all__: list[str] = []
