"""The host tools every plugin shares: finding and running iptables and nft
(:mod:`.tools`), nftables requests (:mod:`.nft`), IP masquerading with either
backend (:mod:`.masq`, :mod:`.ipmasq`, :mod:`.ipmasq_nft`), bridge MAC
spoof checking (:mod:`.spoofcheck`), reading ``iptables -S`` and writing
``iptables-restore`` lines (:mod:`.iptables_text`) and the lock on the host
namespace around a list-then-change of its tables (:mod:`.netns_lock`).

Plugins import these modules, never each other's: what two plugins share lives
here or in the framework. This package imports nothing by itself.
"""

__all__: list[str] = []
