"""Output: `-o json` prints the API's own message (proto field names, every field, enum names);
`-o table` prints aligned columns for people."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message


def to_json(message: Message, indent: int | None = 2) -> str:
    return MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=indent
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
