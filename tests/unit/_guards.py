"""What keeps unit tests off the machine's own network namespace.

Unit tests run plugin code in-process, and CI runs them as root. A request or
executor left with ``host_netns=None`` means "this process's own namespace":
a plugin bug (a refusal that no longer refuses, a validation skipped) would
then make a unit test create bridges, veth ends, iptables rules or sysctls on
the machine itself, and leave them there. Every unit test that builds a
:class:`cnilib.plugins.PluginRequest`, calls ``cnilib.plugins._skel.handle``
or makes an ``InProcessExecutor`` passes :data:`NO_SUCH_HOST` as the host
namespace instead, so such a stray host-side action fails on a namespace that
does not exist. ``tests/unit/conftest.py`` adds an automatic backstop for
whatever still names the process's own namespace.
"""

from __future__ import annotations

__all__ = ["NO_SUCH_HOST"]

NO_SUCH_HOST = "/run/netns/cnilib-unit-tests-no-such-namespace"
"""A host namespace path that never exists: host-side work fails on it at once
(``netns: open ...: No such file or directory``) instead of reaching the machine."""
