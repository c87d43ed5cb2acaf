"""Go ``encoding/gob``, as much of it as ``net/rpc`` and the dhcp daemon exchange.

Go's dhcp plugin and its daemon talk ``net/rpc``, whose bodies are gob streams.
This module is that codec, sans I/O; the Go types it carries and their mapping
to cnilib's are in :mod:`._gob_schemas`.

* :class:`Decoder` reads any gob stream of structs, slices, arrays, maps and the
  builtin types (pointers are flattened on the wire, so they need nothing). It
  honours the type definitions the peer sends, so struct fields are matched **by
  name**: a struct value comes out as a dict keyed by the sender's field names,
  and the reader takes the fields it knows, as Go does.
* :class:`Encoder` writes values of a fixed :class:`StructSchema`, sending each
  type's definition once per stream, in Go's order and with Go's id numbering,
  so the bytes match what a Go peer sends for the same types.

Anything malformed raises :class:`GobError` saying what was wrong. The peer may
be hostile, so what one stream can cost is bounded: a message's size
(:data:`MAX_MESSAGE`), the items one message may make (:data:`MAX_ITEMS`), the
type definitions a stream may keep (:data:`MAX_DEFINITIONS`) and how deeply
values nest.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeAlias

import attrs

__all__ = [
    "BOOL",
    "BYTES",
    "COMPLEX",
    "FLOAT",
    "INT",
    "MAX_DEFINITIONS",
    "MAX_ITEMS",
    "MAX_MESSAGE",
    "STRING",
    "UINT",
    "Decoded",
    "Decoder",
    "Encoder",
    "Field",
    "GobError",
    "Schema",
    "SliceSchema",
    "StructSchema",
    "WireArray",
    "WireMap",
    "WireSlice",
    "WireStruct",
    "WireType",
]

# Go's predefined type ids (encoding/gob type.go); user types start at 65.
BOOL = 1
INT = 2
UINT = 3
FLOAT = 4
BYTES = 5
STRING = 6
COMPLEX = 7
_INTERFACE = 8
_FIRST_USER_ID = 64
"""Ids below this are Go's own (builtins and the wire types); a peer never defines them."""
_FIRST_ASSIGNED_ID = 65
"""The first id Go hands out to a program's own types (64 is taken by Go itself)."""

MAX_MESSAGE = 1 << 24
"""The largest gob message accepted (16 MiB; Go's limit is 8 GiB on 64-bit systems).
A CmdArgs is a network configuration, a Result a few addresses: anything near
this is an attack."""

MAX_ITEMS = 1 << 16
"""The most struct fields, slice/array elements and map entries one message may
hold. Each is a Python object: without this bound a 16 MiB message of one-byte
elements would cost gigabytes and minutes (a Result is a few hundred items)."""

MAX_DEFINITIONS = 1 << 12
"""The most type definitions plus their fields one stream may send. They are kept
for the stream's life, so this bounds what a connection holds (Go's rpc and CNI
types are a few dozen)."""

_MAX_DEPTH = 64
"""How deeply values may nest (a recursive type could otherwise exhaust the stack)."""

_BUILTIN_NAMES = {
    BOOL: "bool",
    INT: "int",
    UINT: "uint",
    FLOAT: "float",
    BYTES: "[]byte",
    STRING: "string",
    COMPLEX: "complex",
}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1


class GobError(ValueError):
    """A gob stream that is malformed or does not fit the expected Go type.

    The text starts ``gob:`` like Go's own errors and says what was wrong.
    """

    def __init__(self, what: str) -> None:
        super().__init__(f"gob: {what}")


# ----------------------------------------------------------------------------- types


@attrs.frozen
class WireStruct:
    """A struct type the peer defined: its fields' names and type ids, in order."""

    name: str
    fields: tuple[tuple[str, int], ...]


@attrs.frozen
class WireSlice:
    """A slice type the peer defined."""

    name: str
    elem: int


@attrs.frozen
class WireArray:
    """An array type the peer defined."""

    name: str
    elem: int
    length: int


@attrs.frozen
class WireMap:
    """A map type the peer defined."""

    name: str
    key: int
    elem: int


WireType: TypeAlias = WireStruct | WireSlice | WireArray | WireMap


@attrs.frozen
class Field:
    """One field of a :class:`StructSchema`.

    A ``pointer`` field (Go ``*int``) is left out only when its value is None, and
    sent even when zero; any other field is left out when zero, as Go does. Struct
    fields are always sent (Go sends a struct value even when it is empty).
    """

    name: str
    type: Schema
    pointer: bool = False


@attrs.frozen
class StructSchema:
    """A Go struct type this side encodes; ``name`` is Go's (``""`` for ``struct{}``)."""

    name: str
    fields: tuple[Field, ...]


@attrs.frozen
class SliceSchema:
    """A Go slice type this side encodes; ``name`` is Go's (``[]string``)."""

    name: str
    elem: Schema


Schema: TypeAlias = "int | StructSchema | SliceSchema"
"""A builtin type id (:data:`STRING`, ...) or a composite schema."""


# ---------------------------------------------------------------------------- decoding


class _Reader:
    """Reads gob primitives from one message; running past its end is a GobError."""

    __slots__ = ("data", "items", "limit", "pos")

    def __init__(self, data: bytes, limit: int) -> None:
        self.data = data
        self.pos = 0
        self.items = self.limit = limit

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int, what: str) -> None:
        """Count ``count`` more items against the message's budget (before making them)."""
        self.items -= count
        if self.items < 0:
            raise GobError(f"{what}: more than {self.limit} items in one message")

    def uint(self) -> int:
        if self.pos >= len(self.data):
            raise GobError("unexpected end of message")
        first = self.data[self.pos]
        self.pos += 1
        if first < 0x80:
            return first
        size = 256 - first
        if size > 8:
            raise GobError(f"invalid unsigned integer (length byte {first:#04x})")
        end = self.pos + size
        if end > len(self.data):
            raise GobError("unexpected end of message in an integer")
        value = int.from_bytes(self.data[self.pos : end], "big")
        self.pos = end
        return value

    def int(self) -> int:
        bits = self.uint()
        return ~(bits >> 1) if bits & 1 else bits >> 1

    def bytes(self) -> bytes:
        size = self.uint()
        if size > self.remaining():
            raise GobError(f"{size}-byte string or []byte overruns its message")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value


def _field_numbers(reader: _Reader, count: int, what: str) -> Iterator[int]:
    """The field numbers of one struct value (delta-encoded, ended by a 0 delta)."""
    number = -1
    while True:
        delta = reader.uint()
        if delta == 0:
            return
        number += delta
        if number >= count:
            raise GobError(f"{what}: field number {number} out of range (it has {count})")
        reader.take(1, what)
        yield number


def _type_id(reader: _Reader, what: str) -> int:
    tid = reader.int()
    if tid <= 0:
        raise GobError(f"{what}: invalid type id {tid}")
    return tid


def _common(reader: _Reader) -> str:
    """A ``CommonType{Name string; Id typeId}``: its name (the id is the message's)."""
    name = ""
    for number in _field_numbers(reader, 2, "CommonType"):
        if number == 0:
            name = _text(reader.bytes())
        else:
            reader.int()
    return name


def _read_struct_type(reader: _Reader) -> WireStruct:
    name = ""
    fields: list[tuple[str, int]] = []
    for number in _field_numbers(reader, 2, "structType"):
        if number == 0:
            name = _common(reader)
            continue
        count = reader.uint()
        if count > reader.remaining():
            raise GobError(f"struct type {name!r}: {count} fields overrun the message")
        reader.take(count, f"struct type {name!r}")
        for _ in range(count):
            field_name, field_id = "", 0
            for part in _field_numbers(reader, 2, "fieldType"):
                if part == 0:
                    field_name = _text(reader.bytes())
                else:
                    field_id = _type_id(reader, f"field {field_name!r} of struct {name!r}")
            if not field_id:
                raise GobError(f"field {field_name!r} of struct {name!r} has no type")
            fields.append((field_name, field_id))
    return WireStruct(name, tuple(fields))


def _read_composite(reader: _Reader, kind: str, count: int) -> tuple[str, list[int]]:
    """A slice/array/map type: its name and its other fields (ids, length)."""
    name = ""
    values = [0] * (count - 1)
    for number in _field_numbers(reader, count, f"{kind}Type"):
        if number == 0:
            name = _common(reader)
        else:
            values[number - 1] = reader.int()
    return name, values


def _read_wire_type(reader: _Reader) -> WireType:
    """A ``wireType`` (Go's type definition message)."""
    found: WireType | None = None
    for number in _field_numbers(reader, 7, "wireType"):
        if found is not None:
            raise GobError("a type definition with more than one kind")
        if number == 0:
            name, (elem, length) = _read_composite(reader, "array", 3)
            found = WireArray(name, _check_id(elem, name), length)
        elif number == 1:
            name, (elem,) = _read_composite(reader, "slice", 2)
            found = WireSlice(name, _check_id(elem, name))
        elif number == 2:
            found = _read_struct_type(reader)
        elif number == 3:
            name, (key, elem) = _read_composite(reader, "map", 3)
            found = WireMap(name, _check_id(key, name), _check_id(elem, name))
        else:
            name = ""
            for part in _field_numbers(reader, 1, "gobEncoderType"):
                if part == 0:
                    name = _common(reader)
            raise GobError(f"type {name!r} uses a custom marshaler, which is not supported")
    if found is None:
        raise GobError("an empty type definition")
    return found


def _check_id(tid: int, name: str) -> int:
    if tid <= 0:
        raise GobError(f"type {name!r} refers to invalid type id {tid}")
    return tid


def _text(raw: bytes) -> str:
    # Go strings are bytes; surrogateescape keeps any of them and encodes back unchanged.
    return raw.decode("utf-8", "surrogateescape")


def _float(bits: int) -> float:
    # Gob sends a float64's bits byte-reversed, as an unsigned integer.
    value: float = struct.unpack("<d", bits.to_bytes(8, "big"))[0]
    return value


@attrs.frozen
class Decoded:
    """One value read from a stream: its type (a builtin id or the peer's definition)."""

    type: int | WireType
    value: object

    @property
    def is_empty_struct(self) -> bool:
        """Whether this is a value of a struct type without fields (Go ``struct{}``)."""
        return isinstance(self.type, WireStruct) and not self.type.fields


class Decoder:
    """Reads one direction of a gob stream: :meth:`feed` bytes, take :meth:`next` values.

    Struct values come out as dicts keyed by field name (fields the peer left out,
    i.e. zero values, are absent), slices and arrays as lists, maps as dicts,
    ``[]byte`` as bytes. Type definitions are remembered for the stream's life.
    """

    def __init__(
        self,
        *,
        max_message: int = MAX_MESSAGE,
        max_items: int = MAX_ITEMS,
        max_definitions: int = MAX_DEFINITIONS,
    ) -> None:
        self._buf = bytearray()
        self._types: dict[int, WireType] = {}
        self._max = max_message
        self._max_items = max_items
        self._definitions_left = max_definitions

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        self._buf += data

    @property
    def pending(self) -> bool:
        """Whether part of a message is buffered (EOF now would cut it short)."""
        return bool(self._buf)

    def next(self) -> Decoded | None:
        """The next value, or None until more bytes are fed; raises :class:`GobError`."""
        while True:
            message = self._frame()
            if message is None:
                return None
            reader = _Reader(message, self._max_items)
            tid = reader.int()
            if tid < 0:
                self._define(-tid, reader)
                continue
            if tid == 0:
                raise GobError("a value of type id 0")
            return self._top_value(tid, reader)

    def _frame(self) -> bytes | None:
        buf = self._buf
        if not buf:
            return None
        first = buf[0]
        if first < 0x80:
            size, header = first, 1
        else:
            count = 256 - first
            if count > 8:
                raise GobError(f"invalid message length (length byte {first:#04x})")
            if len(buf) < 1 + count:
                return None
            size, header = int.from_bytes(buf[1 : 1 + count], "big"), 1 + count
        if size > self._max:
            raise GobError(f"message of {size} bytes is too big (the limit is {self._max})")
        if size == 0:
            raise GobError("an empty message")
        if len(buf) < header + size:
            return None
        message = bytes(buf[header : header + size])
        del buf[: header + size]
        return message

    def _define(self, tid: int, reader: _Reader) -> None:
        if tid < _FIRST_USER_ID:
            raise GobError(f"a definition of reserved type id {tid}")
        if tid in self._types:
            raise GobError(f"duplicate definition of type id {tid}")
        wire = _read_wire_type(reader)
        if reader.remaining():
            raise GobError(f"{reader.remaining()} extra bytes after the definition of type {tid}")
        self._definitions_left -= 1 + (len(wire.fields) if isinstance(wire, WireStruct) else 0)
        if self._definitions_left < 0:
            raise GobError("too many type definitions in one stream")
        self._types[tid] = wire

    def _top_value(self, tid: int, reader: _Reader) -> Decoded:
        wire = self._lookup(tid)
        value: object
        if isinstance(wire, WireStruct):
            value = self._struct(wire, reader, 0)
        else:
            # A value that is not a struct is sent as field 0 of an implicit struct.
            if reader.uint() != 0:
                raise GobError(f"non-zero field delta before a value of type id {tid}")
            value = self._value(tid, reader, 0)
        if reader.remaining():
            raise GobError(f"{reader.remaining()} extra bytes after a value of type id {tid}")
        return Decoded(wire, value)

    def _lookup(self, tid: int) -> int | WireType:
        if tid in _BUILTIN_NAMES:
            return tid
        if tid == _INTERFACE:
            raise GobError("interface values are not supported")
        wire = self._types.get(tid)
        if wire is None:
            raise GobError(f"a value of undefined type id {tid}")
        return wire

    def _value(self, tid: int, reader: _Reader, depth: int) -> object:
        if depth > _MAX_DEPTH:
            raise GobError(f"values nested more than {_MAX_DEPTH} deep")
        if tid == BOOL:
            flag = reader.uint()
            if flag > 1:
                raise GobError(f"invalid bool {flag}")
            return flag == 1
        if tid == INT:
            return reader.int()
        if tid == UINT:
            return reader.uint()
        if tid == FLOAT:
            return _float(reader.uint())
        if tid == COMPLEX:
            return complex(_float(reader.uint()), _float(reader.uint()))
        if tid == BYTES:
            return reader.bytes()
        if tid == STRING:
            return _text(reader.bytes())
        wire = self._lookup(tid)
        if isinstance(wire, int):  # every builtin was read above
            raise GobError(f"type id {tid} cannot be read")
        if isinstance(wire, WireStruct):
            return self._struct(wire, reader, depth)
        count = reader.uint()
        # Every element takes at least one byte: a larger count is a lie.
        if count > reader.remaining():
            raise GobError(f"{wire.name or 'a value'}: {count} elements overrun the message")
        reader.take(count, wire.name or "a value")
        if isinstance(wire, WireArray):
            if count != wire.length:
                raise GobError(
                    f"array {wire.name!r} of {count} elements, its type says {wire.length}"
                )
            return [self._value(wire.elem, reader, depth + 1) for _ in range(count)]
        if isinstance(wire, WireSlice):
            return [self._value(wire.elem, reader, depth + 1) for _ in range(count)]
        if wire.key not in _BUILTIN_NAMES:
            raise GobError(f"map {wire.name!r}: only keys of builtin types are supported")
        out: dict[object, object] = {}
        for _ in range(count):
            key = self._value(wire.key, reader, depth + 1)
            out[key] = self._value(wire.elem, reader, depth + 1)
        return out

    def _struct(self, wire: WireStruct, reader: _Reader, depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        what = f"struct {wire.name or 'struct{}'}"
        for number in _field_numbers(reader, len(wire.fields), what):
            name, tid = wire.fields[number]
            out[name] = self._value(tid, reader, depth + 1)
        return out


# ---------------------------------------------------------------------------- encoding


def _put_uint(out: bytearray, value: int) -> None:
    if value < 0x80:
        out.append(value)
        return
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    out.append(256 - len(raw))
    out += raw


def _put_int(out: bytearray, value: int) -> None:
    _put_uint(out, (value << 1) if value >= 0 else ((~value << 1) | 1))


def _put_bytes(out: bytearray, raw: bytes) -> None:
    _put_uint(out, len(raw))
    out += raw


def _put_message(out: bytearray, body: bytearray) -> None:
    _put_uint(out, len(body))
    out += body


def _is_zero(value: object) -> bool:
    return not value and isinstance(value, int | str | bytes | Sequence)


class Encoder:
    """Writes one direction of a gob stream: type definitions once, then values.

    Type ids are numbered as Go numbers them in a fresh process (from 65, a struct
    before its fields, a slice after its element), so a stream that starts with
    the same types as a Go peer's is byte-for-byte the same.
    """

    def __init__(self) -> None:
        self._ids: dict[StructSchema | SliceSchema, int] = {}
        self._sent: set[int] = set()
        self._next_id = _FIRST_ASSIGNED_ID

    def encode(self, schema: StructSchema, value: Mapping[str, object]) -> bytes:
        """The messages for one value: the definitions not sent yet, then the value.

        ``value`` maps field names to Python values (str, bytes, int, bool, lists,
        nested mappings); a missing field is a zero one. Raises :class:`GobError`
        for a value that does not fit the schema.
        """
        self._assign(schema)
        out = bytearray()
        self._send_type(schema, out)
        body = bytearray()
        _put_int(body, self._ids[schema])
        self._put_struct(schema, value, body)
        _put_message(out, body)
        return bytes(out)

    def _assign(self, schema: Schema) -> None:
        if isinstance(schema, int) or schema in self._ids:
            return
        if isinstance(schema, StructSchema):
            self._ids[schema] = self._take_id()
            for field in schema.fields:
                self._assign(field.type)
        else:
            self._assign(schema.elem)
            self._ids[schema] = self._take_id()

    def _take_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    def _id(self, schema: Schema) -> int:
        return schema if isinstance(schema, int) else self._ids[schema]

    def _send_type(self, schema: Schema, out: bytearray) -> None:
        if isinstance(schema, int) or self._ids[schema] in self._sent:
            return
        tid = self._ids[schema]
        self._sent.add(tid)
        body = bytearray()
        _put_int(body, -tid)
        common = bytearray()
        if schema.name:
            common += b"\x01"
            _put_bytes(common, schema.name.encode())
            common += b"\x01"
        else:
            common += b"\x02"
        _put_int(common, tid)
        common += b"\x00"
        if isinstance(schema, StructSchema):
            body += b"\x03\x01" + common
            if schema.fields:
                body += b"\x01"
                _put_uint(body, len(schema.fields))
                for field in schema.fields:
                    body += b"\x01"
                    _put_bytes(body, field.name.encode())
                    body += b"\x01"
                    _put_int(body, self._id(field.type))
                    body += b"\x00"
            body += b"\x00\x00"
        else:
            body += b"\x02\x01" + common + b"\x01"
            _put_int(body, self._id(schema.elem))
            body += b"\x00\x00"
        _put_message(out, body)
        # Go sends a type's definition before those of the types it uses.
        if isinstance(schema, StructSchema):
            for field in schema.fields:
                self._send_type(field.type, out)
        else:
            self._send_type(schema.elem, out)

    def _put_struct(self, schema: StructSchema, value: object, out: bytearray) -> None:
        if not isinstance(value, Mapping):
            raise GobError(
                f"struct {schema.name!r}: expected a mapping, got {type(value).__name__}"
            )
        last = -1
        for number, field in enumerate(schema.fields):
            item = value.get(field.name)
            if isinstance(field.type, StructSchema):
                item = {} if item is None else item
            elif item is None or (not field.pointer and _is_zero(item)):
                continue
            _put_uint(out, number - last)
            last = number
            self._put_value(field.type, item, f"{schema.name}.{field.name}", out)
        out.append(0)

    def _put_value(self, schema: Schema, value: object, where: str, out: bytearray) -> None:
        if isinstance(schema, StructSchema):
            self._put_struct(schema, value, out)
        elif isinstance(schema, SliceSchema):
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise GobError(f"{where}: expected a sequence, got {type(value).__name__}")
            _put_uint(out, len(value))
            for item in value:
                self._put_value(schema.elem, item, where, out)
        elif schema == STRING and isinstance(value, str):
            _put_bytes(out, value.encode("utf-8", "surrogateescape"))
        elif schema == BYTES and isinstance(value, bytes):
            _put_bytes(out, value)
        elif schema == BOOL and isinstance(value, bool):
            _put_uint(out, int(value))
        elif schema == INT and type(value) is int and _INT64[0] <= value <= _INT64[1]:
            _put_int(out, value)
        elif schema == UINT and type(value) is int and 0 <= value <= _UINT64_MAX:
            _put_uint(out, value)
        else:
            raise GobError(f"{where}: {value!r} is not a Go {_BUILTIN_NAMES.get(schema, schema)}")
