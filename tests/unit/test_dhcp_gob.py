"""The dhcp RPC's gob codec and Go types (``_gob``, ``_gob_schemas``) against bytes
captured from Go's plugin and daemon (1.1.1).

``go_release_request.bin``: what Debian's Go dhcp plugin wrote after the HTTP
handshake for a DEL (rpc.Request + skel.CmdArgs, definitions included).
``go_allocate_reply.bin``: what Go's dhcp daemon answered an Allocate with
(rpc.Response + types100.Result). Both directions are checked byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import pytest

from cnilib.plugins.ipam.dhcp._gob import (
    BYTES,
    INT,
    STRING,
    UINT,
    Decoded,
    Decoder,
    Encoder,
    Field,
    GobError,
    SliceSchema,
    StructSchema,
    WireStruct,
)
from cnilib.plugins.ipam.dhcp._gob_schemas import (
    CMD_ARGS,
    CMD_ARGS_LATEST,
    EMPTY,
    REQUEST,
    RESPONSE,
    RESULT,
    RESULT_GO_1_1_1,
    CmdArgs,
    cmd_args_from_value,
    cmd_args_to_value,
    result_from_value,
    result_to_value,
)
from cnilib.results import ResultV100

DATA = Path(__file__).resolve().parent.parent / "data" / "dhcp"
GO_RELEASE_REQUEST = (DATA / "go_release_request.bin").read_bytes()
GO_ALLOCATE_REPLY = (DATA / "go_allocate_reply.bin").read_bytes()

GO_CMD_ARGS = CmdArgs(
    container_id="cidcap",
    netns="/run/netns/whatever",
    ifname="eth0",
    args="K8S_POD_NAME=x",
    path="/usr/lib/cni",
    stdin_data=b'{"cniVersion":"1.0.0","name":"dhcpnet","ipam":{"type":"dhcp",'
    b'"daemonSocketPath":"/tmp/dhcpr/cap.sock"}}\n',
)


def _v1(obj: dict[str, object]) -> ResultV100:
    result = ResultV100.from_json(obj)
    assert isinstance(result, ResultV100)
    return result


GO_RESULT = _v1(
    {
        "cniVersion": "1.0.0",
        "ips": [{"address": "192.0.2.105/24", "gateway": "192.0.2.1"}],
        "routes": [
            {"dst": "10.99.0.0/16", "gw": "192.0.2.254"},
            {"dst": "192.0.2.128/25", "gw": "0.0.0.0"},
        ],
    },
)
FULL_RESULT = _v1(
    {
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x", "mtu": 1400},
            {"name": "vhost", "socketPath": "/s.sock", "pciID": "0000:00:01.0"},
        ],
        "ips": [
            {"interface": 0, "address": "192.0.2.5/24", "gateway": "192.0.2.1"},
            {"interface": 1, "address": "2001:db8::5/64", "gateway": "2001:db8::1"},
            {"address": "198.51.100.7/32"},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "192.0.2.1", "priority": 5, "mtu": 1300, "advmss": 1200},
            {"dst": "192.0.2.128/25", "scope": 0, "table": 0},
            {"dst": "2001:db8:1::/48", "gw": "2001:db8::1", "scope": 253, "table": 100},
        ],
        "dns": {
            "nameservers": ["192.0.2.53", "2001:db8::53"],
            "domain": "example.org",
            "search": ["a.example.org", "b.example.org"],
            "options": ["ndots:2"],
        },
    }
)
GO_RESULT = attrs.evolve(GO_RESULT, cni_version="")  # Go's daemon leaves it empty


def _message(body: bytes) -> bytes:
    """A framed gob message (short bodies only)."""
    assert len(body) < 128
    return bytes([len(body)]) + body


def _decode_all(data: bytes) -> list[Decoded]:
    decoder = Decoder()
    decoder.feed(data)
    values = []
    while (value := decoder.next()) is not None:
        values.append(value)
    assert not decoder.pending
    return values


# ----------------------------------------------------------------------------- golden


def test_decodes_go_plugins_release_request() -> None:
    header, body = _decode_all(GO_RELEASE_REQUEST)
    assert header.type == WireStruct("Request", (("ServiceMethod", 6), ("Seq", 3)))
    assert header.value == {"ServiceMethod": "DHCP.Release"}  # Seq 0 is left out
    assert cmd_args_from_value(body.value) == GO_CMD_ARGS


def test_encodes_a_request_as_go_plugin_does() -> None:
    encoder = Encoder()
    data = encoder.encode(REQUEST, {"ServiceMethod": "DHCP.Release", "Seq": 0})
    data += encoder.encode(CMD_ARGS, cmd_args_to_value(GO_CMD_ARGS))
    assert data == GO_RELEASE_REQUEST


def test_decodes_go_daemons_allocate_reply() -> None:
    header, body = _decode_all(GO_ALLOCATE_REPLY)
    assert header.value == {"ServiceMethod": "DHCP.Allocate"}
    assert not body.is_empty_struct
    result = result_from_value(body.value)
    assert result == GO_RESULT
    # The on-link route's gateway is 0.0.0.0 (4 zero bytes), not absent: Go prints it.
    assert result.to_object()["routes"] == [
        {"dst": "10.99.0.0/16", "gw": "192.0.2.254"},
        {"dst": "192.0.2.128/25", "gw": "0.0.0.0"},
    ]


def test_encodes_a_reply_as_go_daemon_does() -> None:
    # With Go 1.1.1's field set, the ids, the definitions' order and names match Go's.
    encoder = Encoder()
    data = encoder.encode(RESPONSE, {"ServiceMethod": "DHCP.Allocate", "Seq": 0, "Error": ""})
    data += encoder.encode(RESULT_GO_1_1_1, result_to_value(GO_RESULT))
    assert data == GO_ALLOCATE_REPLY


# Go's error reply: the Response header, then a struct{} (type id 76 in that daemon).
GO_ERROR_REPLY = (
    GO_ALLOCATE_REPLY[: 1 + 0x3A]  # the Response definition
    + _message(
        bytes.fromhex("ff82 01 0d")
        + b"DHCP.Allocate"
        + bytes.fromhex("02 0b")
        + b"no more tri"
        + bytes.fromhex("00")
    )
    + _message(bytes.fromhex("ff97 03 01 02 ff98 00 00 00"))
    + _message(bytes.fromhex("ff98 00"))
)


def test_decodes_go_daemons_error_reply() -> None:
    header, body = _decode_all(GO_ERROR_REPLY)
    assert header.value == {"ServiceMethod": "DHCP.Allocate", "Error": "no more tri"}
    assert body.is_empty_struct
    assert body.value == {}


def test_encodes_struct_as_go_does() -> None:
    encoder = Encoder()
    header = encoder.encode(RESPONSE, {"ServiceMethod": "DHCP.Allocate", "Error": "no more tri"})
    assert header == GO_ERROR_REPLY[: len(header)]
    # Go's layout with this stream's next id (66) instead of that daemon's 76.
    assert encoder.encode(EMPTY, {}) == _message(
        bytes.fromhex("ff83 03 01 02 ff84 00 00 00")
    ) + _message(bytes.fromhex("ff84 00"))


# -------------------------------------------------------------------------- round trips


def test_full_result_round_trips_with_latest_fields() -> None:
    (body,) = _decode_all(Encoder().encode(RESULT, result_to_value(FULL_RESULT)))
    assert result_from_value(body.value) == FULL_RESULT


def test_explicit_zero_pointers_are_sent_and_none_is_not() -> None:
    # Go can't send a pointer to 0 (zero values are left out); we do, Go decodes it.
    value = result_to_value(FULL_RESULT)
    (body,) = _decode_all(Encoder().encode(RESULT, value))
    assert isinstance(body.value, dict)
    ips = body.value["IPs"]
    routes = body.value["Routes"]
    assert isinstance(ips, list)
    assert isinstance(routes, list)
    assert ips[0]["Interface"] == 0
    assert "Interface" not in ips[2]
    assert routes[1]["Scope"] == 0
    assert routes[1]["Table"] == 0
    assert "Scope" not in routes[0]
    assert "Table" not in routes[0]


def test_empty_result_round_trips() -> None:
    empty = ResultV100()
    (body,) = _decode_all(Encoder().encode(RESULT, result_to_value(empty)))
    assert result_from_value(body.value) == empty
    assert body.value == {"DNS": {}}  # a struct field is always sent, as Go does


def test_types_are_defined_once_per_stream() -> None:
    encoder = Encoder()
    first = encoder.encode(RESULT, result_to_value(GO_RESULT))
    second = encoder.encode(RESULT, result_to_value(GO_RESULT))
    assert len(second) < len(first)
    values = _decode_all(first + second)
    assert [result_from_value(v.value) for v in values] == [GO_RESULT, GO_RESULT]


def test_ipv4_mapped_and_16_byte_masks_read_as_go_prints_them() -> None:
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9])
    mask16 = b"\xff" * 15 + b"\x00"
    value = {
        "IPs": [{"Address": {"IP": mapped, "Mask": mask16}, "Gateway": mapped}],
        "Routes": [{"Dst": {"IP": mapped, "Mask": b"\xff\xff\xff\x00"}}],
    }
    result = result_from_value(value)
    assert result.to_object()["ips"] == [{"address": "192.0.2.9/24", "gateway": "192.0.2.9"}]
    assert result.to_object()["routes"] == [{"dst": "192.0.2.9/24"}]


def test_a_zero_ipnet_is_no_address() -> None:
    result = result_from_value({"IPs": [{"Address": {}}], "Routes": [{}]})
    assert result.ips[0].address is None
    assert result.routes[0].dst is None


def test_strings_keep_bytes_that_are_not_utf8() -> None:
    args = CmdArgs(container_id="c", netns="/run/netns/\udcff", stdin_data=b"\xff")
    (body,) = _decode_all(Encoder().encode(CMD_ARGS, cmd_args_to_value(args)))
    assert cmd_args_from_value(body.value) == args


# ----------------------------------------------------------------- peer's definitions


def test_latest_cmd_args_with_netns_override_decodes_by_name() -> None:
    value = {**cmd_args_to_value(GO_CMD_ARGS), "NetnsOverride": "true"}
    (body,) = _decode_all(Encoder().encode(CMD_ARGS_LATEST, value))
    assert isinstance(body.type, WireStruct)
    assert [name for name, _ in body.type.fields][-2:] == ["NetnsOverride", "StdinData"]
    assert cmd_args_from_value(body.value) == GO_CMD_ARGS


def test_fields_in_another_order_and_unknown_ones_are_matched_by_name() -> None:
    nested = StructSchema("Extra", (Field("Flag", 1), Field("Ratio", 4), Field("Z", 7)))
    odd = StructSchema(
        "CmdArgs",
        (
            Field("StdinData", BYTES),
            Field("Unknown", SliceSchema("[]Extra", nested)),
            Field("IfName", STRING),
            Field("Count", UINT),
            Field("ContainerID", STRING),
            Field("Delta", INT),
        ),
    )
    value = {
        "StdinData": b"{}",
        "Unknown": [{"Flag": True}],
        "IfName": "eth1",
        "Count": 3,
        "ContainerID": "c",
        "Delta": -5,
    }
    with pytest.raises(GobError):  # our encoder knows no floats/complex: write them by hand
        Encoder().encode(odd, {"Unknown": [{"Ratio": 1.5}]})
    (decoded,) = _decode_all(Encoder().encode(odd, value))
    assert decoded.value == value
    assert cmd_args_from_value(decoded.value) == CmdArgs(
        container_id="c", ifname="eth1", stdin_data=b"{}"
    )


def _typedef(tid: int, wire_type: bytes) -> bytes:
    return _message(_zigzag(-tid) + wire_type)


def _zigzag(value: int) -> bytes:
    bits = (value << 1) if value >= 0 else ((~value << 1) | 1)
    return bytes([bits]) if bits < 0x80 else bytes([0xFF, bits])


def _struct_def(tid: int, name: bytes, fields: list[tuple[bytes, int]]) -> bytes:
    body = b"\x03\x01\x01" + bytes([len(name)]) + name + b"\x01" + _zigzag(tid) + b"\x00"
    if fields:
        body += b"\x01" + bytes([len(fields)])
        for fname, ftid in fields:
            body += b"\x01" + bytes([len(fname)]) + fname + b"\x01" + _zigzag(ftid) + b"\x00"
    return _typedef(tid, body + b"\x00\x00")


def test_floats_complex_arrays_maps_and_singletons_decode() -> None:
    array_def = _typedef(
        66, b"\x01\x01\x01\x03[2]\x01" + _zigzag(66) + b"\x00\x01\x04\x01\x04\x00\x00"
    )
    map_def = _typedef(
        67, b"\x04\x01\x01\x03map\x01" + _zigzag(67) + b"\x00\x01\x0c\x01\x04\x00\x00"
    )
    struct_def = _struct_def(65, b"S", [(b"F", 4), (b"C", 7), (b"A", 66), (b"M", 67)])
    # 1.5 is 0x3ff8000000000000, sent byte-reversed: 0xf83f -> two bytes.
    value = (
        _zigzag(65)
        + b"\x01\xfe\xf8\x3f"
        + b"\x01\xfe\xf8\x3f\x00"
        + b"\x01\x02\x02\x03"
        + b"\x01\x01\x01k\x06"
        + b"\x00"
    )
    singleton = _zigzag(6) + b"\x00\x02hi"  # a bare string: field 0 of an implicit struct
    values = _decode_all(array_def + map_def + struct_def + _message(value) + _message(singleton))
    assert values[0].value == {"F": 1.5, "C": complex(1.5, 0), "A": [1, -2], "M": {"k": 3}}
    assert values[1].value == "hi"
    assert values[1].type == STRING


def test_values_may_arrive_in_pieces() -> None:
    decoder = Decoder()
    seen = []
    for byte in GO_ALLOCATE_REPLY:
        decoder.feed(bytes([byte]))
        if (value := decoder.next()) is not None:
            seen.append(value)
    assert len(seen) == 2
    assert not decoder.pending
    assert result_from_value(seen[1].value) == GO_RESULT


# ------------------------------------------------------------------------ malformed


def _drain(decoder: Decoder) -> None:
    while decoder.next() is not None:
        pass


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x80", "invalid message length"),
        (b"\x00", "an empty message"),
        (b"\xfc\x01\x00\x00\x00", "too big"),
        (_message(b"\x00"), "type id 0"),
        (_message(b"\xff"), "unexpected end of message"),
        (_message(b"\xfe\x01"), "unexpected end of message in an integer"),
        (_message(b"\xf7" + bytes(9)), "invalid unsigned integer"),
        (_message(b"\xff\x82\x00"), "undefined type id 65"),
        (_message(_zigzag(8) + b"\x00"), "interface values are not supported"),
        (_struct_def(10, b"X", []), "reserved type id 10"),
        (_struct_def(65, b"X", []) * 2, "duplicate definition of type id 65"),
        (_typedef(65, b"\x00"), "an empty type definition"),
        (_typedef(65, b"\x08\x00"), "field number 7 out of range"),
        (_typedef(65, b"\x05\x01\x01\x01T\x00\x00\x00"), "custom marshaler"),
        (_typedef(65, b"\x02\x01\x00\x01\x0c\x00\x01"), "more than one kind"),
        (_typedef(65, b"\x02\x01\x00\x01\x00\x00\x00"), "invalid type id 0"),
        (_typedef(65, b"\x03\x01\x00\x01\x01\x01\x01F\x00\x00\x00"), "has no type"),
        (_typedef(65, b"\x03\x01\x00\x01\x7f\x00\x00"), "127 fields overrun"),
        (_struct_def(65, b"X", []) + b"\x00", "an empty message"),
        (_typedef(65, b"\x03\x01\x00\x00\x00\x07"), "extra bytes after the definition"),
        (_struct_def(65, b"X", [(b"B", 1)]) + _message(b"\xff\x82\x01\x02\x00"), "invalid bool 2"),
        (_struct_def(65, b"X", [(b"B", 1)]) + _message(b"\xff\x82\x02\x01\x00"), "field number 1"),
        (_struct_def(65, b"X", [(b"B", 1)]) + _message(b"\xff\x82\x00\x00"), "extra bytes after"),
        (_struct_def(65, b"X", [(b"S", 6)]) + _message(b"\xff\x82\x01\x05ab\x00"), "overruns"),
        (
            _struct_def(65, b"X", [(b"Q", 70)]) + _message(b"\xff\x82\x01\x00\x00"),
            "undefined type id 70",
        ),
        (_message(_zigzag(6) + b"\x01\x00"), "non-zero field delta"),
        (
            _typedef(65, b"\x02\x01\x00\x01\x0c\x00\x00") + _message(b"\xff\x82\x00\x7f"),
            "127 elements overrun",
        ),
        (
            _typedef(65, b"\x01\x01\x00\x01\x04\x01\x06\x00\x00")
            + _message(b"\xff\x82\x00\x01\x02"),
            "of 1 elements, its type says 3",
        ),
        (
            _typedef(65, b"\x04\x01\x00\x01\xff\x84\x01\x04\x00\x00")
            + _struct_def(66, b"K", [])
            + _message(b"\xff\x82\x00\x01\x00\x02"),
            "only keys of builtin types",
        ),
    ],
)
def test_malformed_streams_raise_gob_error(data: bytes, error: str) -> None:
    decoder = Decoder(max_message=1 << 20)
    decoder.feed(data)
    with pytest.raises(GobError, match=error) as info:
        _drain(decoder)
    assert str(info.value).startswith("gob: ")


def test_deep_nesting_is_refused() -> None:
    # type 65 = struct { Next []T65 }: a value nested 100 deep.
    data = _struct_def(65, b"T", [(b"Next", 66)]) + _typedef(
        66, b"\x02\x01\x00\x01" + _zigzag(65) + b"\x00\x00"
    )
    value = b"\x01\x01" * 100 + b"\x00" * 101
    decoder = Decoder()
    decoder.feed(
        data + bytes([0xFE]) + len(value + b"\xff\x82").to_bytes(2, "big") + b"\xff\x82" + value
    )
    with pytest.raises(GobError, match="nested more than"):
        decoder.next()


def _uint(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([256 - len(raw)]) + raw


def _big_message(body: bytes) -> bytes:
    return _uint(len(body)) + body


def test_a_message_of_many_tiny_elements_is_refused_before_they_are_made() -> None:
    # 65 = struct{}, 66 = []T65: one byte per element. A 16 MiB message of them
    # would be 16 million dicts (gigabytes, minutes of a blocked event loop).
    count = 1 << 20
    data = (
        _struct_def(65, b"E", [])
        + _typedef(
            66, b"\x02\x01\x01\x01S\x01" + _zigzag(66) + b"\x00\x01" + _zigzag(65) + b"\x00\x00"
        )
        + _big_message(b"\xff\x84\x00" + _uint(count) + bytes(count))
    )
    decoder = Decoder()
    decoder.feed(data)
    with pytest.raises(GobError, match=r"S: more than 65536 items in one message"):
        _drain(decoder)


def test_a_message_of_many_struct_fields_is_refused() -> None:
    # A struct value is as costly as a slice: each field present is an item.
    fields = [(b"", 2)] * 70000  # field names may repeat on the wire
    value = _zigzag(65) + b"\x01\x00" * 70000 + b"\x00"
    decoder = Decoder(max_definitions=1 << 20)
    decoder.feed(_big_struct_def(65, fields) + _big_message(value))
    with pytest.raises(GobError, match="more than 65536 items"):
        _drain(decoder)


def _big_struct_def(tid: int, fields: list[tuple[bytes, int]]) -> bytes:
    body = b"\x03\x01\x01\x01T\x01" + _zigzag(tid) + b"\x00\x01" + _uint(len(fields))
    body += b"".join(
        b"\x01" + bytes([len(fname)]) + fname + b"\x01" + _zigzag(ftid) + b"\x00"
        for fname, ftid in fields
    )
    return _big_message(_zigzag(-tid) + body + b"\x00\x00")


def test_a_type_of_millions_of_fields_is_refused() -> None:
    fields = [(b"", 2)] * (1 << 20)
    decoder = Decoder(max_definitions=1 << 30)
    decoder.feed(_big_struct_def(65, fields))
    with pytest.raises(GobError, match=r"struct type 'T': more than 65536 items"):
        _drain(decoder)


def test_a_stream_may_not_define_types_without_end() -> None:
    # Definitions live as long as the stream: their total is bounded.
    data = b"".join(_big_struct_def(tid, [(b"A", 2)] * 70) for tid in range(65, 125))
    decoder = Decoder()
    decoder.feed(data)
    with pytest.raises(GobError, match="too many type definitions in one stream"):
        _drain(decoder)
    decoder = Decoder(max_definitions=60 * 71)
    decoder.feed(data)
    _drain(decoder)  # exactly at the limit


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([], "Result: expected a struct, got a list"),
        ({"IPs": "x"}, r"Result.IPs: expected a Go slice, got a string"),
        ({"IPs": [{"Gateway": b"\x01\x02\x03"}]}, "an IP address of 3 bytes"),
        ({"IPs": [{"Interface": True}]}, "IPConfig.Interface: expected a Go int, got a bool"),
        (
            {"IPs": [{"Address": {"IP": b"\x01\x02\x03\x04", "Mask": b"\xff\x00\xff\x00"}}]},
            "non-canonical",
        ),
        (
            {"IPs": [{"Address": {"IP": bytes(16), "Mask": b"\xff\x00\x00\x00"}}]},
            "a 4-byte mask for ::",
        ),
        ({"IPs": [{"Address": {"IP": b"\x01\x02\x03\x04"}}]}, "a 0-byte mask"),
        ({"Routes": [{"Dst": "x"}]}, "Route.Dst: expected a struct"),
        ({"DNS": {"Nameservers": [b"x"]}}, "DNS.Nameservers: expected strings, got a \\[\\]byte"),
        ({"Interfaces": [{"Mtu": "9000"}]}, "Interface.Mtu: expected a Go int"),
    ],
)
def test_results_of_the_wrong_shape_raise_gob_error(value: object, error: str) -> None:
    with pytest.raises(GobError, match=error):
        result_from_value(value)


def test_cmd_args_of_the_wrong_shape_raise_gob_error() -> None:
    with pytest.raises(
        GobError, match=r"CmdArgs\.ContainerID: expected a Go string, got an integer"
    ):
        cmd_args_from_value({"ContainerID": 5})
    with pytest.raises(GobError, match=r"CmdArgs\.StdinData: expected a Go \[\]byte, got a string"):
        cmd_args_from_value({"StdinData": "{}"})
    with pytest.raises(GobError, match="CmdArgs: expected a struct"):
        cmd_args_from_value("x")


@pytest.mark.parametrize(
    ("schema", "value", "error"),
    [
        (REQUEST, {"Seq": -1}, "Request.Seq: -1 is not a Go uint"),
        (REQUEST, {"ServiceMethod": b"x"}, "Request.ServiceMethod: b'x' is not a Go string"),
        (RESULT, {"IPs": [{"Interface": 1 << 63}]}, "is not a Go int"),
        (RESULT, {"IPs": "abc"}, "expected a sequence, got str"),
        (RESULT, {"DNS": []}, "expected a mapping, got list"),
    ],
)
def test_values_that_do_not_fit_the_schema_raise_gob_error(
    schema: StructSchema, value: dict[str, object], error: str
) -> None:
    with pytest.raises(GobError, match=error):
        Encoder().encode(schema, value)


def test_random_corruption_only_ever_raises_gob_error() -> None:
    rng = random.Random(1)
    streams = [GO_RELEASE_REQUEST, GO_ALLOCATE_REPLY, GO_ERROR_REPLY]
    for _ in range(3000):
        data = bytearray(rng.choice(streams))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)) :]
        decoder = Decoder(max_message=1 << 16)
        decoder.feed(bytes(data))
        try:
            while (value := decoder.next()) is not None:
                if isinstance(value.value, dict) and "IPs" in str(value.type):
                    result_from_value(value.value)
                elif isinstance(value.value, dict) and "StdinData" in str(value.type):
                    cmd_args_from_value(value.value)
        except GobError:
            pass
