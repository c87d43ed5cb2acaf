"""The ``dhcp`` IPAM plugin and its lease daemon."""
