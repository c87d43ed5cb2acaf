"""The plugin server: cnilib's plugin executables answered by one resident process.

An executable ``python -m cnilib.plugins install`` writes is a thin client
(:mod:`cnilib.plugins.server._client`, copied next to the scripts and compiled
there once): it starts the interpreter with ``-IS``, imports only built-in
modules, and sends the call to a :class:`PluginServer` listening on a Unix
socket, which has cnilib and the plugins loaded already. When no server answers
it runs the plugin itself, exactly as before; installed with ``--start-server``,
it also starts a server (detached, exiting when idle) for the calls after it.

Which socket. The one given to ``install --server-socket`` (default
:data:`DEFAULT_SOCKET`), unless the environment variable
``CNILIB_PLUGIN_SERVER`` (:data:`SOCKET_ENV`) names another; set but empty,
the executable never uses a server.

What is identical. The server answers through the executables' own code
(:func:`cnilib.plugins._main.respond` and skel's ``handle``): the same stdout
bytes, error objects, exit status and stderr. The plugin acts with the
*caller's* network namespace as the host namespace: the client passes an fd of
its ``/proc/self/ns/net``. What differs, by design:

- the client forwards the ``CNI_*`` variables only (skel reads no other); the
  plugin otherwise sees the server's environment, so the host tools
  (iptables, nft) are looked up in the server's ``PATH`` (then the fixed
  sbin/bin directories, as always);
- paths are resolved in the server's mount namespace (``CNI_NETNS``, the IPAM
  store, the dhcp daemon's socket): the server must run on the same node, in
  the same mount namespace as the runtime (``ip netns exec`` changes only
  ``/sys`` and ``/etc/netns`` files, which the plugins do not read for paths);
- a delegated plugin that is not one of cnilib's in-process plugins (a binary
  on ``CNI_PATH``) is exec'd by the server, in the server's namespace;
- ``dhcp daemon`` is never forwarded: the executable runs the daemon itself.

Safety. The socket is ``0600`` in a directory made ``0700``; the server serves
its own user and root only (``SO_PEERCRED``) and refuses others, whose
executables then run the plugin themselves. The client talks only to a server
running as its own user or root. Once a request is sent it is never run again
in the client: a server that dies before answering is a code-999 error object
naming the socket. A refused or malformed request was never run, so the
client runs it itself.

Protocol (version 1). One request and one response per connection. A frame is
a 12-byte header, ``b"CNIS"``, the protocol version (1 byte), the kind (1
byte), two reserved zero bytes, the body size (4 bytes, big-endian), then the
body. Bodies are sequences of *fields*, each a 4-byte big-endian length and
its bytes.

- Request, kind 1 (call): fields plugin type, stdin, then one ``NAME=VALUE``
  per ``CNI_*`` variable. The first ``sendmsg`` carries exactly one fd in an
  ``SCM_RIGHTS`` message: the caller's network namespace. At most
  :data:`MAX_REQUEST` bytes of body.
- Response, kind 1 (result): exit status (4 bytes), then fields stdout and
  stderr. Kind 2 (refused) and 3 (bad request): the reason as UTF-8; the call
  was not run.

A server that speaks another version answers a bad request, so an older client
runs its plugin itself rather than fail.
"""

from __future__ import annotations

from cnilib.plugins.server._client import SOCKET_ENV
from cnilib.plugins.server._protocol import MAX_REQUEST
from cnilib.plugins.server._server import (
    DEFAULT_SOCKET,
    NETNS_IDLE,
    READ_TIMEOUT,
    PluginServer,
    PluginServerError,
    wait_for_server,
)

__all__ = [
    "DEFAULT_SOCKET",
    "MAX_REQUEST",
    "NETNS_IDLE",
    "READ_TIMEOUT",
    "SOCKET_ENV",
    "PluginServer",
    "PluginServerError",
    "wait_for_server",
]
