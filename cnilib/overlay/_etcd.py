"""The :class:`~cnilib.overlay.ClusterStore` over etcd's v3 gRPC API, with aetcd.

This is the only module that imports the etcd client (aetcd, an asyncio gRPC client;
the ``overlay`` extra installs it), and only inside :func:`connect_etcd`, so importing
:mod:`cnilib.overlay` stays cheap and the CNI plugin never loads grpc.

aetcd provides the channel, the generated stubs and messages; the requests are
made on the stubs directly, because the store needs what aetcd's convenience layer
drops: a watch response's header revision (the point to resume from) and its
batch boundaries (a lease expiry deletes several keys at one revision), and the
failure branch of a transaction. Every gRPC or aetcd error becomes a
:class:`~cnilib.overlay.StoreError`:

* UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED by the transport, a closed connection
  or our own timeout -> :class:`~cnilib.overlay.StoreUnavailableError`;
* a compacted revision (a watch's ``compact_revision``, OUT_OF_RANGE on a range)
  -> :class:`~cnilib.overlay.RevisionCompactedError`;
* anything else (a lease not found on put, invalid argument, auth) -> StoreError;

each naming the endpoint and the operation. Never call this from a thread that
entered another network namespace: grpc's sockets would be made there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import urllib.parse
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal, NoReturn

from cnilib.overlay._errors import (
    OverlayError,
    RevisionCompactedError,
    StoreError,
    StoreUnavailableError,
)
from cnilib.overlay._store import KeyValue, LeaseGrant, Snapshot, TxnOutcome, WatchBatch, WatchEvent

__all__ = ["EtcdStore", "connect_etcd", "parse_endpoints"]

MISSING_CLIENT = "the overlay needs the etcd client aetcd: pip install 'cnilib[overlay]'"

# Channel options. grpc's reconnect backoff grows to 120 s by default: after an etcd
# outage the channel would keep failing fast for minutes after etcd is back. Capped
# at 1 s, the first call after a restart reconnects. Keepalive pings (etcd permits
# one per 5 s) find a peer that vanished without closing the connection, which would
# otherwise hang an idle watch for good.
_CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.enable_retries": 0,
}

# grpc sends a channel through $http_proxy/$https_proxy/$grpc_proxy unless $no_proxy
# names the host. A proxy cannot reach this host's loopback, and etcd's Go client (like
# etcdctl and flannel) never proxies loopback: neither do we.
_LOOPBACK_OPTIONS: dict[str, Any] = {"grpc.enable_http_proxy": 0}

_UNAVAILABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"})


def parse_endpoints(endpoints: str | Sequence[str]) -> tuple[tuple[str, int], ...]:
    """``"http://h:2379,h2:2379"`` or a list of such -> ((host, port), ...).

    Raises :class:`~cnilib.overlay.OverlayConfigError` for a malformed or https one
    (TLS is not supported yet)."""
    from cnilib.overlay._errors import OverlayConfigError

    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    parsed: list[tuple[str, int]] = []
    for raw in items:
        text = raw.strip()
        if not text:
            continue
        url = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
        if url.scheme != "http":
            raise OverlayConfigError(
                f"etcd endpoint {text!r}: only http:// endpoints are supported, not {url.scheme}"
            )
        try:
            port = url.port or 2379
        except ValueError:
            raise OverlayConfigError(f"etcd endpoint {text!r}: invalid port") from None
        if not url.hostname or url.path not in ("", "/"):
            raise OverlayConfigError(f"etcd endpoint {text!r}: expected http://HOST:PORT")
        parsed.append((url.hostname, port))
    if not parsed:
        raise OverlayConfigError(f"no etcd endpoint in {endpoints!r}")
    return tuple(parsed)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _quiet_grpc() -> None:
    """grpc's C core logs to stderr on its own (absl init notices, fork-support and
    reconnect messages); an agent reports connection trouble itself, as
    StoreUnavailableError. Only errors get through, unless the user set a level."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GRPC_TRACE", "")


async def connect_etcd(
    endpoints: str | Sequence[str],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (a bound per request, kept by the store)
) -> EtcdStore:
    """An :class:`EtcdStore` on the first of ``endpoints`` that answers a request.

    ``timeout`` bounds every request (and this connection attempt per endpoint).
    Raises :class:`~cnilib.overlay.StoreUnavailableError` naming the endpoints when
    none answers, :class:`~cnilib.overlay.OverlayError` when aetcd is not installed.
    """
    targets = parse_endpoints(endpoints)
    _quiet_grpc()
    try:
        import aetcd
        import aetcd.rpc
    except ImportError as exc:
        raise OverlayError(MISSING_CLIENT) from exc
    failures: list[str] = []
    for host, port in targets:
        store = EtcdStore(aetcd, host, port, timeout=timeout)
        try:
            await store.ping()
        except StoreError as exc:
            await store.close()
            failures.append(str(exc))
            continue
        return store
    names = ", ".join(f"{h}:{p}" for h, p in targets)
    raise StoreUnavailableError(f"cannot reach etcd at {names}: {'; '.join(failures)}")


class EtcdStore:
    """:class:`~cnilib.overlay.ClusterStore` on one etcd endpoint (made by :func:`connect_etcd`)."""

    def __init__(self, aetcd: Any, host: str, port: int, *, timeout: float) -> None:
        self._aetcd = aetcd
        self._rpc = aetcd.rpc
        self.endpoint = f"{host}:{port}"
        self.timeout = timeout
        options = dict(_CHANNEL_OPTIONS)
        if _is_loopback(host):
            options.update(_LOOPBACK_OPTIONS)
        self._client = aetcd.Client(host=host, port=port, timeout=timeout, options=options)
        self._closed = False

    def __repr__(self) -> str:
        return f"EtcdStore({self.endpoint!r})"

    # -- plumbing ----------------------------------------------------------------------

    async def _stubs(self, operation: str) -> Any:
        if self._closed:
            raise StoreError(f"etcd at {self.endpoint}: {operation}: the store is closed")
        try:
            await self._client.connect()
        except Exception as exc:
            self._fail(operation, exc)
        return self._client

    async def _unary(self, operation: str, stub_call: str, request: Any) -> Any:
        client = await self._stubs(operation)
        stub_name, method = stub_call.split(".")
        fn = getattr(getattr(client, stub_name), method)
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the call completes
            async with asyncio.timeout(self.timeout + 1):
                return await fn(request, timeout=self.timeout, metadata=client.metadata)
        except asyncio.CancelledError:
            self._cancelled(operation)
        except Exception as exc:
            self._fail(operation, exc)

    def _cancelled(self, operation: str) -> NoReturn:
        """A call ended with CancelledError: re-raise it when this task is being
        cancelled; otherwise grpc cancelled the call because :meth:`close` closed the
        channel under it, which is a StoreError (a CancelledError would make the caller
        believe its own task was cancelled)."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        if self._closed:
            raise StoreError(f"etcd at {self.endpoint}: {operation}: the store was closed")
        raise StoreUnavailableError(f"etcd at {self.endpoint}: {operation}: the call was cancelled")

    def _fail(self, operation: str, exc: BaseException) -> NoReturn:
        """Raise ``exc`` as the StoreError it means, naming endpoint and operation."""
        raise self._map(operation, exc) from exc

    def _map(self, operation: str, exc: BaseException) -> StoreError:
        where = f"etcd at {self.endpoint}: {operation}"
        if isinstance(exc, StoreError):
            return exc
        aetcd_exc = self._aetcd.exceptions
        if isinstance(exc, aetcd_exc.RevisionCompactedError):
            return RevisionCompactedError(
                f"{where}: revision compacted (at {exc.compacted_revision})",
                compact_revision=exc.compacted_revision,
            )
        cause = exc.__cause__ if isinstance(exc, aetcd_exc.ClientError) else exc
        if isinstance(cause, self._rpc.AioRpcError):
            code = cause.code().name
            details = cause.details() or code
            if code == "OUT_OF_RANGE" and "compacted" in details:
                return RevisionCompactedError(f"{where}: {details}")
            if code in _UNAVAILABLE_CODES:
                return StoreUnavailableError(f"{where}: {details} ({code})")
            return StoreError(f"{where}: {details} ({code})")
        if isinstance(
            exc,
            (
                aetcd_exc.ConnectionFailedError,
                aetcd_exc.ConnectionTimeoutError,
                TimeoutError,
                ConnectionError,
            ),
        ):
            return StoreUnavailableError(f"{where}: {exc or type(exc).__name__}")
        return StoreError(f"{where}: {type(exc).__name__}: {exc}")

    def _kv(self, kv: Any) -> KeyValue:
        return KeyValue(
            key=kv.key.decode("utf-8", "surrogateescape"),
            value=bytes(kv.value),
            create_revision=kv.create_revision,
            mod_revision=kv.mod_revision,
            lease=kv.lease,
        )

    def _range(self, key: str, *, prefix: bool = False) -> Any:
        raw = key.encode("utf-8", "surrogateescape")
        if not prefix:
            return self._rpc.RangeRequest(key=raw)
        if not raw:  # every key
            return self._rpc.RangeRequest(key=b"\0", range_end=b"\0")
        end = self._aetcd.utils.prefix_range_end(raw)
        return self._rpc.RangeRequest(key=raw, range_end=end)

    # -- ClusterStore ------------------------------------------------------------------

    async def ping(self) -> None:
        """One request proving the endpoint answers (the store's status)."""
        await self._unary("status", "maintenancestub.Status", self._rpc.StatusRequest())

    async def get(self, key: str) -> KeyValue | None:
        reply = await self._unary(f"get {key!r}", "kvstub.Range", self._range(key))
        return self._kv(reply.kvs[0]) if reply.kvs else None

    async def list(self, prefix: str) -> Snapshot:
        request = self._range(prefix, prefix=True)
        reply = await self._unary(f"list {prefix!r}", "kvstub.Range", request)
        items = tuple(sorted((self._kv(kv) for kv in reply.kvs), key=lambda kv: kv.key))
        return Snapshot(items=items, revision=reply.header.revision)

    async def _txn(
        self, operation: str, expect: Mapping[str, int], success: Sequence[Any]
    ) -> TxnOutcome:
        rpc = self._rpc
        compare = [
            rpc.Compare(
                key=key.encode("utf-8", "surrogateescape"),
                result=rpc.Compare.EQUAL,
                target=rpc.Compare.MOD,
                mod_revision=revision,
            )
            for key, revision in expect.items()
        ]
        # on failure, read the compared keys in the same transaction: the loser of a
        # race learns who won without another round trip
        failure = [rpc.RequestOp(request_range=self._range(key)) for key in expect]
        request = rpc.TxnRequest(compare=compare, success=list(success), failure=failure)
        reply = await self._unary(operation, "kvstub.Txn", request)
        if reply.succeeded:
            return TxnOutcome(succeeded=True, current={})
        current: dict[str, KeyValue | None] = {}
        for key, response in zip(expect, reply.responses, strict=True):
            kvs = response.response_range.kvs
            current[key] = self._kv(kvs[0]) if kvs else None
        return TxnOutcome(succeeded=False, current=current)

    async def compare_and_put(
        self, expect: Mapping[str, int], puts: Mapping[str, bytes], *, lease: int = 0
    ) -> TxnOutcome:
        rpc = self._rpc
        ops = [
            rpc.RequestOp(
                request_put=rpc.PutRequest(
                    key=key.encode("utf-8", "surrogateescape"), value=value, lease=lease
                )
            )
            for key, value in puts.items()
        ]
        return await self._txn(f"compare_and_put {', '.join(puts)}", expect, ops)

    async def compare_and_delete(
        self, expect: Mapping[str, int], deletes: Sequence[str]
    ) -> TxnOutcome:
        rpc = self._rpc
        ops = [
            rpc.RequestOp(
                request_delete_range=rpc.DeleteRangeRequest(
                    key=key.encode("utf-8", "surrogateescape")
                )
            )
            for key in deletes
        ]
        return await self._txn(f"compare_and_delete {', '.join(deletes)}", expect, ops)

    async def grant(self, ttl: int) -> LeaseGrant:
        request = self._rpc.LeaseGrantRequest(TTL=ttl)
        reply = await self._unary(f"grant lease of {ttl} s", "leasestub.LeaseGrant", request)
        if reply.error:
            raise StoreError(f"etcd at {self.endpoint}: grant lease of {ttl} s: {reply.error}")
        return LeaseGrant(id=reply.ID, ttl=reply.TTL)

    async def keepalive(self, lease: int) -> int:
        operation = f"keepalive lease {lease}"
        client = await self._stubs(operation)
        # LeaseKeepAlive is a stream: one request, one reply, then end the call
        call = client.leasestub.LeaseKeepAlive(
            iter([self._rpc.LeaseKeepAliveRequest(ID=lease)]),
            timeout=self.timeout,
            metadata=client.metadata,
        )
        try:
            async with asyncio.timeout(self.timeout + 1):
                reply = await call.read()
        except asyncio.CancelledError:
            self._cancelled(operation)
        except Exception as exc:
            self._fail(operation, exc)
        finally:
            call.cancel()
        if reply is self._rpc_eof():
            raise StoreUnavailableError(f"etcd at {self.endpoint}: {operation}: no reply")
        return max(0, int(reply.TTL))

    def _rpc_eof(self) -> object:
        import grpc.aio

        return grpc.aio.EOF

    async def time_to_live(self, lease: int) -> tuple[int, int] | None:
        request = self._rpc.LeaseTimeToLiveRequest(ID=lease, keys=False)
        reply = await self._unary(
            f"time_to_live lease {lease}", "leasestub.LeaseTimeToLive", request
        )
        if reply.TTL < 0:  # etcd: -1 for a lease it does not know (any more)
            return None
        return int(reply.TTL), int(reply.grantedTTL)

    async def revoke(self, lease: int) -> None:
        operation = f"revoke lease {lease}"
        try:
            await self._unary(
                operation, "leasestub.LeaseRevoke", self._rpc.LeaseRevokeRequest(ID=lease)
            )
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, self._rpc.AioRpcError) and cause.code().name == "NOT_FOUND":
                return  # gone already: that is what the caller wanted
            raise

    async def compact(self, revision: int) -> None:
        """Compact etcd's history below ``revision`` (tests and maintenance)."""
        request = self._rpc.CompactionRequest(revision=revision, physical=True)
        await self._unary(f"compact at {revision}", "kvstub.Compact", request)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchBatch, None]:
        operation = f"watch {prefix!r} from revision {start_revision}"
        client = await self._stubs(operation)
        rpc = self._rpc
        rng = self._range(prefix, prefix=True)
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=rng.key, range_end=rng.range_end, start_revision=max(start_revision, 0)
            )
        )
        # one gRPC stream per watch: ending it (the finally below, when the caller
        # closes the iterator) makes etcd drop the watcher
        call = rpc.WatchStub(client.channel).Watch(metadata=client.metadata)
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await call.write(create)
            except asyncio.CancelledError:
                self._cancelled(operation)
            except Exception as exc:
                self._fail(operation, exc)
            while True:
                try:
                    reply = await call.read()
                except asyncio.CancelledError:
                    self._cancelled(operation)
                except Exception as exc:
                    self._fail(operation, exc)
                if reply is self._rpc_eof():
                    raise StoreUnavailableError(
                        f"etcd at {self.endpoint}: {operation}: the watch stream ended"
                    )
                if reply.compact_revision:
                    raise RevisionCompactedError(
                        f"etcd at {self.endpoint}: {operation}: "
                        f"compacted at revision {reply.compact_revision}",
                        compact_revision=reply.compact_revision,
                    )
                if reply.canceled:
                    raise StoreError(
                        f"etcd at {self.endpoint}: {operation}: canceled by etcd: "
                        f"{reply.cancel_reason or 'no reason given'}"
                    )
                if not reply.events:
                    continue  # the created notice, or a progress notification
                yield WatchBatch(
                    events=tuple(self._event(event) for event in reply.events),
                    revision=reply.header.revision,
                )
        finally:
            call.cancel()

    def _event(self, event: Any) -> WatchEvent:
        kind: Literal["put", "delete"] = "delete" if event.type == self._rpc.Event.DELETE else "put"
        return WatchEvent(
            type=kind,
            key=event.kv.key.decode("utf-8", "surrogateescape"),
            value=bytes(event.kv.value) if kind == "put" else b"",
            mod_revision=event.kv.mod_revision,
        )

    async def close(self) -> None:
        """Close the gRPC channel (idempotent)."""
        if self._closed:
            return
        self._closed = True
        # closing a broken channel can fail: there is nothing left to release then
        with contextlib.suppress(Exception):
            await self._client.close()
