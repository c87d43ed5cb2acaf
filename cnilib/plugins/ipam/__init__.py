"""IPAM plugins: ``host-local`` (:mod:`cnilib.plugins.ipam.host_local`) and ``static``
(:mod:`cnilib.plugins.ipam.static`).

Each is imported on its own by the plugin registry, so this package imports
nothing; neither plugin touches the kernel (no pyroute2).
"""

__all__: list[str] = []
