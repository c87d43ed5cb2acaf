"""One DHCP lease of one attachment, kept by an asyncio task (Go's ``lease.go``).

A :class:`LeaseKeeper` acquires a lease for one interface in one container
namespace (DISCOVER, OFFER, REQUEST, ACK) and then maintains it: BOUND until
T1, RENEWING (unicast REQUEST to the server) until T2, REBINDING (broadcast
REQUEST) until the lease expires. Log lines go to the ``cnilib.dhcp`` logger
and read like Go's (``<key>: acquiring lease``, ``<key>: lease acquired,
expiration is <time>``, ``renewing lease``, ``lease renewed``, ``renewal
time expired, rebinding``, ``lease rebound``, ``lease expired``,
``releasing lease``).

Matched with Go (the latest release, and 1.1.1 where they agree):

- Retries: 4 fast retries 2 s apart, then 4 s, 8 s, 16 s, ... each ±1 s at
  random and at most ``resend_max`` (62 s), the whole bounded by
  ``resend_timeout`` (208 s) per acquisition, then ``no more tries``; each
  attempt waits ``attempt_timeout`` (10 s) for the server.
- Client identifier, parameter request list and the ``provide`` options on
  every DISCOVER and REQUEST, client identifier only on RELEASE.
- A NAK while acquiring is a failed attempt (retried). T1, T2 and the lease
  time come from options 58, 59 and 51 (defaults 50 %, 85 %, 60 min).
- A socket is opened for each transaction and closed after it.
- The BROADCAST flag (Go ``-broadcast``) is set on the messages sent while
  the client has no address (DISCOVER, REQUEST for an offer, INIT-REBOOT);
  renewing and rebinding send ``ciaddr``, to which servers answer unicast.
- The interface or namespace gone: maintenance ends, nothing is released.
- Expiry: an error is logged and the interface is set down, so the
  container stops using an address the server may give to someone else.

Improvements over Go:

- Go's backoff doubles its delay right after the last fast retry and
  checks the cap before doubling, so it waits 2, 2, 2, 2, 8, 16, 32, 64, 64 s
  with the default 62 s maximum. Here the schedule is the one its comments
  (and RFC 2131) intend: 2, 2, 2, 2, 4, 8, 16, 32, 62, 62 s.
- No socket is held while waiting between attempts, and none between
  transactions: the daemon pins no container namespace.
- REBINDING broadcasts a REQUEST for the leased address (RFC 2131 4.4.5)
  instead of Go's fresh DISCOVER, which can silently hand the container a
  different address than the one configured on its interface.
- A NAK while renewing or rebinding ends the lease (RFC 2131: the client
  must stop using the address): an error is logged, the lease is marked
  lost, the interface set down as on expiry, and no new address is sought
  (Go keeps renewing until T2, then re-DISCOVERs; pyroute2's client takes a
  new address at once). An ACK naming another address is treated alike.
- Renewing is retried with the backoff until T2 and rebinding until
  expiry (Go retries each for ``resend_timeout`` and checks afterwards).
- T2 beyond the lease time falls back to 85 %, T1 beyond T2 to 50 % (as Go
  1.1.1; the latest Go takes the options as given).
- The lease times count from the sending of the REQUEST the ACK answers
  (RFC 2131 4.4.1), not from the ACK's arrival (Go), which can be up to
  ``attempt_timeout`` later than the server's count.
- A lease time under :data:`~cnilib.plugins.ipam.dhcp._timing.MIN_LEASE_TIME`
  (20 s) counts as 20 s, and a T1 or T2 of 0 as absent (dhcpcd's rules): Go
  renews back to back when a server sends them.
- While selecting, an OFFER without an address is ignored, and so are an
  ACK or NAK from another server than the chosen one (option 54) and an ACK
  for another address than the one offered (Go takes the first ACK or NAK
  with the xid).
- An ACK whose lease times (51, 58, 59) are malformed is a failed attempt,
  retried like silence, also while renewing (maintenance goes on).
- The ``no more tries`` error names the interface, the namespace, the budget
  and the last failure.
- The lease can be saved (:meth:`LeaseKeeper.to_record`) after every change
  (``on_change``) and resumed from the record by a restarted daemon
  (:meth:`LeaseKeeper.from_record`): timers re-armed from the stored wall
  times; past T1 it renews at once, past T2 it rebinds, past expiry it asks
  for the same address again (INIT-REBOOT: a broadcast REQUEST for it, then
  a DISCOVER asking for it; another address is refused, not taken). A
  record from the future (the wall clock went back) renews at once.

Time: stored times are wall-clock (:func:`time.time`), waiting uses the
monotonic clock; both come from a :class:`Clock`, which is injected
(:class:`KeeperDeps`) like the random jitter, the transaction ids and the
socket factory, so tests need no real sleeping and no network.

This module holds the keeper; the pieces it is made of have their own:
:mod:`~cnilib.plugins.ipam.dhcp._timing` (:class:`Timing` and its backoff,
:class:`Clock`, :func:`lease_timers`),
:mod:`~cnilib.plugins.ipam.dhcp._lease_state` (:class:`LeaseState`),
:mod:`~cnilib.plugins.ipam.dhcp._request_options`
(:class:`LeaseRequestOptions`) and :mod:`~cnilib.plugins.ipam.dhcp._lease_record`
(the saved record, :class:`LeaseRecordError`). Their public names are
re-exported here.
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict, Unpack

from cnilib._log import get_logger
from cnilib.errors import ErrorCode, PluginError
from cnilib.netlink import NetlinkError, NetNSError, NetNSNotFoundError
from cnilib.netlink._dhcp import (
    DhcpLinkNotFoundError,
    DhcpReply,
    DhcpRequest,
    DhcpSocket,
    DhcpSocketError,
    MessageType,
    open_dhcp_socket,
)
from cnilib.plugins.ipam.dhcp._lease_record import LeaseRecord, LeaseRecordError
from cnilib.plugins.ipam.dhcp._lease_state import HELD, LeaseState
from cnilib.plugins.ipam.dhcp._options import DhcpOptionError
from cnilib.plugins.ipam.dhcp._request_options import LeaseRequestOptions
from cnilib.plugins.ipam.dhcp._timing import (
    Clock,
    SystemClock,
    Timing,
    format_wall_time,
    lease_timers,
)

__all__ = [
    "Clock",
    "KeeperDeps",
    "LeaseError",
    "LeaseKeeper",
    "LeaseRecordError",
    "LeaseRequestOptions",
    "LeaseState",
    "SystemClock",
    "Timing",
    "lease_timers",
]

_log = get_logger("cnilib.dhcp")


OpenSocket = Callable[[str, str], Awaitable[DhcpSocket]]
LinkDown = Callable[[str, str], Awaitable[None]]
OnChange = Callable[["LeaseKeeper"], None]


class KeeperDeps(TypedDict, total=False):
    """What a :class:`LeaseKeeper` works with, each optional (keyword arguments).

    One list for :class:`LeaseKeeper` and :meth:`LeaseKeeper.from_record`;
    the defaults are applied by the keeper.
    """

    open_socket: OpenSocket
    """Opens a socket for one transaction (default: the real AF_PACKET socket)."""
    clock: Clock | None
    """The clocks and sleeping (None: :class:`SystemClock`)."""
    rand: Callable[[], float]
    """A float in [0, 1) for the retry jitter (default :func:`random.random`)."""
    new_xid: Callable[[], int] | None
    """A transaction id (None: 32 random bits)."""
    set_link_down: LinkDown | None
    """Sets the interface down on loss or expiry (None: leave it; default: netlink)."""
    on_change: OnChange | None
    """Called after every ACK and every loss, so the owner can save the record."""


class LeaseError(PluginError):
    """No lease could be acquired (Go's ``no more tries``)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, code=ErrorCode.INTERNAL)


class _AttemptFailedError(Exception):
    """One attempt got no usable answer; it is retried."""


class _OutOfTimeError(Exception):
    """The retries' deadline passed; carries the last failure."""

    def __init__(self, last: str) -> None:
        super().__init__(last)
        self.last = last


class _RefusedError(Exception):
    """The server refused the address we hold (NAK, or an ACK for another address)."""


class _GoneError(Exception):
    """The interface or its namespace no longer exists."""


def _is_gone(exc: BaseException) -> bool:
    if isinstance(exc, NetNSNotFoundError | DhcpLinkNotFoundError):
        return True
    if isinstance(exc, DhcpSocketError):
        return exc.errno in (errno.ENODEV, errno.ENXIO)
    if isinstance(exc, NetNSError):
        return exc.errno == errno.ENOENT
    if isinstance(exc, NetlinkError):
        return exc.errno in (errno.ENODEV, errno.ENXIO)
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENODEV, errno.ENXIO)
    return False


def _server_id(reply: DhcpReply) -> str:
    """Option 54, else the packet's source (the server to talk to)."""
    return reply.server_id or reply.server_ip


def _offer_unusable(offer: DhcpReply) -> str | None:
    if offer.yiaddr == "0.0.0.0":
        return "it offers no address (yiaddr 0.0.0.0)"
    return None


async def _set_link_down(netns: str, ifname: str) -> None:
    from cnilib import netlink

    await netlink.arun_in_netns(netns, netlink.set_link_down, ifname)


class LeaseKeeper:
    """The lease of one attachment: acquire it, keep it, release it.

    ``key`` names the lease in logs and records (Go's client ID string,
    ``<containerID>/<net>/<ifname>``); ``netns`` is the container
    namespace's path, ``ifname`` the interface in it. ``open_socket`` makes
    a :class:`~cnilib.netlink._dhcp.DhcpSocket` for one transaction;
    ``set_link_down`` sets the interface down when the lease is lost or
    expires (None: leave the link alone); ``on_change`` is called after
    every ACK and every loss (expiry, NAK, interface gone) so the owner can
    save :meth:`to_record`.
    """

    def __init__(
        self,
        key: str,
        netns: str,
        ifname: str,
        options: LeaseRequestOptions,
        timing: Timing | None = None,
        **deps: Unpack[KeeperDeps],
    ) -> None:
        self.key = key
        self.netns = netns
        self.ifname = ifname
        self.options = options
        self.timing = timing if timing is not None else Timing()
        self.on_change = deps.get("on_change")
        self._open_socket = deps.get("open_socket", open_dhcp_socket)
        clock = deps.get("clock")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rand = deps.get("rand", random.random)
        new_xid = deps.get("new_xid")
        self._new_xid = new_xid if new_xid is not None else (lambda: random.getrandbits(32))
        self._set_link_down = deps.get("set_link_down", _set_link_down)
        self._state = LeaseState.INIT
        self._ack: DhcpReply | None = None
        self._obtained: float | None = None
        """Wall time of the ACK."""
        self._obtained_mono = 0.0
        """The same instant on the monotonic clock."""
        self._sent = (0.0, 0.0)
        """Wall and monotonic time the latest REQUEST went out (the lease counts from it)."""
        self._lease_time = self._t1 = self._t2 = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- what the owner reads ------------------------------------------------

    @property
    def state(self) -> LeaseState:
        return self._state

    @property
    def state_name(self) -> str:
        """The state as written in records and messages (``bound``, ``lost``, ...)."""
        return self._state.value

    @property
    def gone(self) -> bool:
        """Whether maintenance ended because the interface or namespace vanished."""
        return self._state is LeaseState.GONE

    @property
    def ack(self) -> DhcpReply | None:
        """The latest ACK (None before the first)."""
        return self._ack

    @property
    def address(self) -> str | None:
        """The leased address (the ACK's ``yiaddr``)."""
        return self._ack.yiaddr if self._ack is not None else None

    @property
    def obtained(self) -> float | None:
        """Wall time the REQUEST answered by the latest ACK was sent.

        The lease's times count from it (RFC 2131 4.4.1), not from the ACK's
        arrival, which can be up to ``attempt_timeout`` later.
        """
        return self._obtained

    @property
    def renew_at(self) -> float | None:
        """Wall time of T1."""
        return None if self._obtained is None else self._obtained + self._t1

    @property
    def rebind_at(self) -> float | None:
        """Wall time of T2."""
        return None if self._obtained is None else self._obtained + self._t2

    @property
    def expires_at(self) -> float | None:
        """Wall time the lease expires."""
        return None if self._obtained is None else self._obtained + self._lease_time

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The maintenance task (None before :meth:`start`)."""
        return self._task

    def check(self) -> bool:
        """Whether the lease is held (bound, renewing or rebinding)."""
        return self._state in HELD

    # -- acquire, maintain, release -------------------------------------------

    async def acquire(self) -> DhcpReply:
        """Get a lease: DISCOVER, OFFER, REQUEST, ACK, retried with backoff.

        Raises :class:`LeaseError` when ``timing.resend_timeout`` passes
        without an ACK; a namespace or interface that cannot be opened
        raises the netlink layer's error at once.
        """
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self.key}: acquire() while the lease is maintained")
        _log.info("%s: acquiring lease", self.key)
        deadline = self._clock.monotonic() + self.timing.resend_timeout
        try:
            ack = await self._retry(self._discover_request, deadline, fatal_open=True)
        except _OutOfTimeError as exc:
            raise LeaseError(
                f"no more tries: no DHCP lease for {self.ifname} in {self.netns} within "
                f"{self.timing.resend_timeout:g} s (last: {exc.last})"
            ) from None
        self._commit(ack)
        _log.info("%s: lease acquired, expiration is %s", self.key, self._fmt_expiry())
        self._changed()
        return ack

    def start(self) -> asyncio.Task[None]:
        """Start maintaining the lease (renew, rebind, expire) in a task."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._maintain(), name=f"dhcp lease {self.key}"
            )
        return self._task

    async def stop(self, release: bool = True) -> None:
        """Stop maintaining; with ``release``, send a RELEASE if the lease is held.

        ``release=False`` is for a daemon shutting down (the lease lives on
        in its record). Failures to release are only logged.
        """
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if release and self.check():
            await self._release()

    async def _release(self) -> None:
        ack = self._ack
        assert ack is not None
        _log.info("%s: releasing lease", self.key)
        try:
            async with await self._open_socket(self.netns, self.ifname) as sock:
                server = _server_id(ack)
                await sock.send(
                    DhcpRequest(
                        MessageType.RELEASE,
                        self._new_xid(),
                        sock.mac,
                        client_id=self.options.client_id,
                        ciaddr=ack.yiaddr,
                        server_id=server,
                        dst_mac=ack.server_mac,
                        src_ip=ack.yiaddr,
                        dst_ip=server,
                    )
                )
        except Exception as exc:
            if _is_gone(exc):
                _log.info("%s: not releasing the lease, %s is gone: %s", self.key, self.ifname, exc)
            else:
                _log.warning("%s: failed to release DHCP lease: %s", self.key, exc)
        self._state = LeaseState.RELEASED

    async def _maintain(self) -> None:
        try:
            while True:
                state = self._state
                if state is LeaseState.BOUND:
                    await self._clock.sleep(self._mono(self._t1) - self._clock.monotonic())
                    _log.info("%s: renewing lease", self.key)
                    self._state = LeaseState.RENEWING
                elif state is LeaseState.RENEWING:
                    try:
                        ack = await self._retry(self._renew, self._mono(self._t2))
                    except _OutOfTimeError:
                        _log.info("%s: renewal time expired, rebinding", self.key)
                        self._state = LeaseState.REBINDING
                        continue
                    self._commit(ack)
                    _log.info("%s: lease renewed, expiration is %s", self.key, self._fmt_expiry())
                    self._changed()
                elif state is LeaseState.REBINDING:
                    try:
                        ack = await self._retry(self._rebind, self._mono(self._lease_time))
                    except _OutOfTimeError:
                        await self._lose(LeaseState.EXPIRED, "lease expired")
                        return
                    self._commit(ack)
                    _log.info("%s: lease rebound, expiration is %s", self.key, self._fmt_expiry())
                    self._changed()
                elif state is LeaseState.REBOOTING:
                    deadline = self._clock.monotonic() + self.timing.resend_timeout
                    try:
                        ack = await self._retry(self._reboot, deadline)
                    except _OutOfTimeError:
                        await self._lose(LeaseState.EXPIRED, "lease expired, not re-acquired")
                        return
                    self._commit(ack)
                    _log.info(
                        "%s: lease re-acquired, expiration is %s", self.key, self._fmt_expiry()
                    )
                    self._changed()
                else:
                    return
        except _RefusedError as exc:
            await self._lose(LeaseState.LOST, f"lease lost: {exc}")
        except _GoneError as exc:
            _log.warning(
                "%s: interface %s no longer exists or link check failed, "
                "terminating lease maintenance: %s",
                self.key,
                self.ifname,
                exc,
            )
            self._state = LeaseState.GONE
            self._changed()

    async def _lose(self, state: LeaseState, why: str) -> None:
        self._state = state
        if self._set_link_down is None:
            _log.error("%s: %s", self.key, why)
        else:
            _log.error("%s: %s, bringing interface DOWN", self.key, why)
            try:
                await self._set_link_down(self.netns, self.ifname)
            except Exception as exc:
                _log.error("%s: failed to bring %s interface DOWN: %s", self.key, self.ifname, exc)
        self._changed()

    # -- retries and transactions ---------------------------------------------

    async def _retry(
        self,
        attempt: Callable[[DhcpSocket, float], Awaitable[DhcpReply]],
        deadline: float,
        *,
        fatal_open: bool = False,
    ) -> DhcpReply:
        """``attempt`` on a fresh socket until it succeeds, with the backoff, until ``deadline``.

        Raises :class:`_OutOfTimeError` when the deadline passes; :class:`_RefusedError`
        from the attempt passes through. A socket that cannot be opened is
        :class:`_GoneError` when the interface or namespace vanished; otherwise
        it is raised as is with ``fatal_open``, else a failed attempt.
        """
        delays = self.timing.delays(self._rand)
        last = "no attempt made"
        clock = self._clock
        while clock.monotonic() < deadline:
            try:
                return await self._transaction(attempt, deadline, fatal_open=fatal_open)
            except _AttemptFailedError as exc:
                last = str(exc)
                _log.warning("%s: %s", self.key, last)
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                break
            delay = min(next(delays), remaining)
            _log.info("%s: retrying in %f seconds", self.key, delay)
            await clock.sleep(delay)
        raise _OutOfTimeError(last)

    async def _transaction(
        self,
        attempt: Callable[[DhcpSocket, float], Awaitable[DhcpReply]],
        deadline: float,
        *,
        fatal_open: bool,
    ) -> DhcpReply:
        try:
            sock = await self._open_socket(self.netns, self.ifname)
        except Exception as exc:
            if fatal_open:
                raise
            if _is_gone(exc):
                raise _GoneError(str(exc)) from exc
            raise _AttemptFailedError(f"cannot open a DHCP socket on {self.ifname}: {exc}") from exc
        async with sock:
            try:
                return await attempt(sock, deadline)
            except (OSError, DhcpSocketError) as exc:
                if _is_gone(exc):
                    if fatal_open:
                        raise
                    raise _GoneError(str(exc)) from exc
                raise _AttemptFailedError(f"DHCP exchange on {self.ifname} failed: {exc}") from exc

    async def _wait(
        self,
        sock: DhcpSocket,
        xid: int,
        wanted: frozenset[MessageType],
        deadline: float,
        skip: Callable[[DhcpReply], str | None] = lambda _reply: None,
    ) -> DhcpReply | None:
        """The first reply of a wanted type within the attempt timeout (and ``deadline``).

        A reply for which ``skip`` gives a reason is ignored (logged at debug level).
        """
        clock = self._clock
        until = min(deadline, clock.monotonic() + self.timing.attempt_timeout)
        while (remaining := until - clock.monotonic()) > 0:
            reply = await sock.receive(xid, remaining)
            if reply is None:
                return None
            if reply.message_type not in wanted:
                continue
            reason = skip(reply)
            if reason is None:
                return reply
            _log.debug("%s: DHCP%s ignored: %s", self.key, reply.message_type.name, reason)
        return None

    def _sending_request(self) -> None:
        clock = self._clock
        self._sent = (clock.time(), clock.monotonic())

    @staticmethod
    def _unusable(ack: DhcpReply) -> _AttemptFailedError | None:
        """Why ``ack``'s lease times cannot be used (a malformed option 51, 58 or 59)."""
        try:
            lease_timers(ack.options)
        except DhcpOptionError as exc:
            return _AttemptFailedError(
                f"DHCP server {_server_id(ack)} sent an unusable DHCPACK: {exc}"
            )
        return None

    def _request(self, sock: DhcpSocket, kind: MessageType, xid: int, **fields: Any) -> DhcpRequest:
        return DhcpRequest(
            kind,
            xid,
            sock.mac,
            client_id=self.options.client_id,
            parameters=self.options.parameters,
            extra_options=self.options.extra_options,
            **fields,
        )

    async def _discover_request(
        self, sock: DhcpSocket, deadline: float, *, want: str | None = None
    ) -> DhcpReply:
        """DISCOVER, first OFFER, REQUEST it, ACK. ``want``: only that address."""
        xid = self._new_xid()
        broadcast = self.options.broadcast
        extra = {} if want is None else {"requested_ip": want}
        await sock.send(
            self._request(sock, MessageType.DISCOVER, xid, broadcast=broadcast, **extra)
        )
        offer = await self._wait(
            sock, xid, frozenset({MessageType.OFFER}), deadline, skip=_offer_unusable
        )
        if offer is None:
            raise _AttemptFailedError(self._silence("DHCPOFFER"))
        if want is not None and offer.yiaddr != want:
            raise _RefusedError(f"the server offers {offer.yiaddr} instead of {want}")
        server = _server_id(offer)

        def not_the_answer(reply: DhcpReply) -> str | None:
            # Only the selected server answers a REQUEST naming it (RFC 2131 4.3.2),
            # and its ACK is for the address it offered.
            if reply.server_id not in (None, server):
                return f"from server {reply.server_id}, not the selected {server}"
            if reply.message_type is MessageType.ACK and reply.yiaddr != offer.yiaddr:
                return f"for {reply.yiaddr}, not the offered {offer.yiaddr}"
            return None

        self._sending_request()
        await sock.send(
            self._request(
                sock,
                MessageType.REQUEST,
                xid,
                broadcast=broadcast,
                requested_ip=offer.yiaddr,
                server_id=server,
            )
        )
        reply = await self._wait(
            sock, xid, frozenset({MessageType.ACK, MessageType.NAK}), deadline, skip=not_the_answer
        )
        if reply is None:
            raise _AttemptFailedError(self._silence("DHCPACK"))
        if reply.message_type is MessageType.NAK:
            raise _AttemptFailedError(f"DHCP server {_server_id(reply)} NAK'd its own offer")
        if (unusable := self._unusable(reply)) is not None:
            raise unusable
        return reply

    async def _renew(self, sock: DhcpSocket, deadline: float) -> DhcpReply:
        """RENEWING: REQUEST unicast to the server that gave the lease."""
        ack = self._held_ack()
        server = _server_id(ack)
        request = self._request(
            sock,
            MessageType.REQUEST,
            self._new_xid(),
            ciaddr=ack.yiaddr,
            dst_mac=ack.server_mac,
            src_ip=ack.yiaddr,
            dst_ip=server,
        )
        return await self._confirm(sock, request, deadline)

    async def _rebind(self, sock: DhcpSocket, deadline: float) -> DhcpReply:
        """REBINDING: REQUEST broadcast to any server (RFC 2131 4.4.5)."""
        ack = self._held_ack()
        request = self._request(
            sock,
            MessageType.REQUEST,
            self._new_xid(),
            ciaddr=ack.yiaddr,
            src_ip=ack.yiaddr,
        )
        return await self._confirm(sock, request, deadline)

    async def _reboot(self, sock: DhcpSocket, deadline: float) -> DhcpReply:
        """INIT-REBOOT: broadcast REQUEST for the old address; silence: DISCOVER for it."""
        ack = self._held_ack()
        request = self._request(
            sock,
            MessageType.REQUEST,
            self._new_xid(),
            broadcast=self.options.broadcast,
            requested_ip=ack.yiaddr,
        )
        try:
            return await self._confirm(sock, request, deadline)
        except _AttemptFailedError:
            if self._clock.monotonic() >= deadline:
                raise
        return await self._discover_request(sock, deadline, want=ack.yiaddr)

    async def _confirm(self, sock: DhcpSocket, request: DhcpRequest, deadline: float) -> DhcpReply:
        """Send a REQUEST for the held address; ACK for it, or :class:`_RefusedError`."""
        self._sending_request()
        await sock.send(request)
        reply = await self._wait(
            sock, request.xid, frozenset({MessageType.ACK, MessageType.NAK}), deadline
        )
        if reply is None:
            raise _AttemptFailedError(self._silence("DHCPACK"))
        held = self._held_ack().yiaddr
        if reply.message_type is MessageType.NAK:
            raise _RefusedError(f"DHCP server {_server_id(reply)} sent DHCPNAK for {held}")
        if reply.yiaddr != held:
            raise _RefusedError(
                f"DHCP server {_server_id(reply)} acknowledged {reply.yiaddr}, not {held}"
            )
        if (unusable := self._unusable(reply)) is not None:
            raise unusable
        return reply

    def _silence(self, what: str) -> str:
        return f"no {what} received within {self.timing.attempt_timeout:g}s"

    def _held_ack(self) -> DhcpReply:
        if self._ack is None:
            raise RuntimeError(f"{self.key}: no lease")
        return self._ack

    # -- bookkeeping -----------------------------------------------------------

    def _commit(self, ack: DhcpReply) -> None:
        """Hold ``ack``; its times count from the REQUEST's sending (RFC 2131 4.4.1)."""
        self._lease_time, self._t1, self._t2 = lease_timers(ack.options)
        self._ack = ack
        self._obtained, self._obtained_mono = self._sent
        self._state = LeaseState.BOUND

    def _mono(self, offset: float) -> float:
        """The monotonic time ``offset`` seconds after the ACK."""
        return self._obtained_mono + offset

    def _fmt_expiry(self) -> str:
        expiry = self.expires_at
        return "unknown" if expiry is None else format_wall_time(expiry)

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self)
        except Exception:
            _log.exception("%s: saving the lease failed", self.key)

    # -- records ---------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A JSON-able record of the lease, for :meth:`from_record`."""
        return LeaseRecord(
            self.key,
            self.netns,
            self.ifname,
            self.options,
            self._state,
            self._obtained,
            self._ack,
        ).to_json()

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        timing: Timing | None = None,
        **deps: Unpack[KeeperDeps],
    ) -> LeaseKeeper:
        """A keeper resuming a saved lease; :meth:`start` it to maintain it.

        The timers are re-armed from the stored wall time: before T2 it is
        BOUND (renewing at once when past T1, or when the time lies in the
        future), before expiry REBINDING, after expiry REBOOTING (asking for
        the same address again). A record of a lease lost, expired, gone or
        released keeps that state. Raises :class:`LeaseRecordError` for a
        record it cannot use (a missing or malformed field, a time no clock
        shows, an option or address that could not be sent).
        """
        saved = LeaseRecord.from_json(record)
        keeper = cls(saved.key, saved.netns, saved.ifname, saved.options, timing, **deps)
        ack, obtained, state = saved.ack, saved.obtained, saved.state
        if ack is None or obtained is None:
            keeper._state = state
            return keeper
        keeper._ack = ack
        keeper._lease_time, keeper._t1, keeper._t2 = lease_timers(ack.options)
        keeper._obtained = obtained
        clk = keeper._clock
        # Waiting uses the monotonic clock: place the ACK on it. A record from
        # the future means the wall clock went back: how long ago the lease
        # began is unknown, so it is renewed at once (T1 taken as passed).
        elapsed = clk.time() - obtained
        if elapsed < 0:
            elapsed = keeper._t1
        keeper._obtained_mono = clk.monotonic() - elapsed
        if state not in HELD and state is not LeaseState.REBOOTING:
            keeper._state = state
        elif elapsed < keeper._t2:
            keeper._state = LeaseState.BOUND
        elif elapsed < keeper._lease_time:
            keeper._state = LeaseState.REBINDING
        else:
            keeper._state = LeaseState.REBOOTING
        _log.info(
            "%s: resuming lease of %s (%s), expiration is %s",
            keeper.key,
            ack.yiaddr,
            keeper._state.value,
            keeper._fmt_expiry(),
        )
        return keeper
