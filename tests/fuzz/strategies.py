"""Hypothesis strategies for any protobuf request, built from its descriptor.

Values lean to the hostile: out-of-range enum numbers, the integer extremes, control
characters and NUL, path traversal, very long strings, YAML bombs in `spec_yaml`, and
unknown fields appended to the wire bytes (so even an empty request has 200 distinct
examples). Every example is valid protobuf on the wire: what is fuzzed is the daemon's
handling of what a client may legally send, not grpc's parser.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

HOSTILE_TEXT = [
    "",
    "demo",
    "solo",
    "demo\n",
    "../../etc/passwd",
    "/models/../../etc",
    "a\0b",
    "x" * 20000,
    "ssh.service",
    "sparkd-demo-rank0.service",
    "192.168.100.1",
    "127.0.0.1",
    "\u202e\u0000\u001b[31m",
    "$(reboot)",
    "-" * 3,
]
YAML = [
    "name: solo\nframework: vllm\nmodel: /models/tiny\nparallelism: {pipeline: 1, tensor: 1}\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n",
    "[" * 50000,
    "{" * 100 + "}" * 100,
    "!!python/object/apply:os.system ['true']\n",
    "name: x\n---\nname: y\n",
    "name: demo\nport: 99999999999999999999999\nparallelism: {pipeline: 1e400}\n",
    "? [a, b]\n: c\n",
    'name: "demo\\0"\nframework: vllm\nmodel: /m\nparallelism: {pipeline: 1}\n',
]

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, 2, 64, 65, 7471, 8000, 29501, 65535, 65536, low, high) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


#: Event kinds and stream ids that pass validation, so WatchEvents is fuzzed past it too.
KINDS = ["unit", "deployment", "peer", "link", "health", "gpu", "pairing", "a.b_c", "x" * 32, "x" * 33]
STREAM_IDS = ["", "0123456789abcdef", "f" * 32, "f" * 33]


def _text(field: FieldDescriptor) -> st.SearchStrategy[str]:
    if field.name == "spec_yaml":
        return st.one_of(st.sampled_from(YAML), st.text(max_size=200))
    if field.name == "kinds":
        return st.one_of(st.sampled_from(KINDS), st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))
    if field.name == "stream_id":
        return st.one_of(st.sampled_from(STREAM_IDS), st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=80))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _ints(-(2**31), 2**31 - 1))
    if t in _INT_RANGES:
        return _ints(*_INT_RANGES[t])
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t == FieldDescriptor.TYPE_STRING:
        return _text(field)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    raise AssertionError(field.full_name)


def messages(descriptor: Descriptor, cls: type[Message], depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of type `cls`: each field set or not, oneofs honoured (the last set wins, as on the wire)."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    maps: dict[str, st.SearchStrategy[dict[Any, Any]]] = {}
    for field in descriptor.fields:
        entry = field.message_type
        if field.type == FieldDescriptor.TYPE_MESSAGE and entry is not None and entry.GetOptions().map_entry:
            key, item = entry.fields_by_name["key"], entry.fields_by_name["value"]
            maps[field.name] = st.dictionaries(_scalar(key), _scalar(item), max_size=4)
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None
            if depth >= 3 or field.message_type.full_name.startswith("google.protobuf."):
                continue
            value: st.SearchStrategy[Any] = messages(field.message_type, _message_class(field), depth + 1)
        else:
            value = _scalar(field)
        is_repeated = field.is_repeated
        fields[field.name] = st.lists(value, max_size=4) if is_repeated else value

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            if isinstance(value, Message):
                getattr(message, name).CopyFrom(value)
            elif isinstance(value, list):
                container = getattr(message, name)
                for item in value:
                    if isinstance(item, Message):
                        container.add().CopyFrom(item)
                    else:
                        container.append(item)
            else:
                setattr(message, name, value)
        for name, strategy in maps.items():
            if draw(st.booleans()):
                getattr(message, name).update(draw(strategy))
        return message

    return build()


def _message_class(field: FieldDescriptor) -> type[Message]:
    assert field.message_type is not None
    return message_factory.GetMessageClass(field.message_type)


@st.composite
def unknown_fields(draw: st.DrawFn) -> bytes:
    """Valid wire bytes for fields no sparkd message defines (numbers 1000+, varints)."""
    out = bytearray()
    for number, value in draw(st.lists(st.tuples(st.integers(1000, 5000), st.integers(0, 2**63)), max_size=3)):
        out += _varint(number << 3) + _varint(value)
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
