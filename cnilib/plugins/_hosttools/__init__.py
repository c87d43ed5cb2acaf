"""The host tools every plugin shares: finding and running iptables and nft
(:mod:`.tools`), nftables requests (:mod:`.nft`), IP masquerading with either
backend (:mod:`.masq`, :mod:`.ipmasq`, :mod:`.ipmasq_nft`) and bridge MAC
spoof checking (:mod:`.spoofcheck`).

Plugins import these modules, never each other's: what two plugins share lives
here or in the framework. This package imports nothing by itself.
"""

__all__: list[str] = []
