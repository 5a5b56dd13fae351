"""YAML spec documents, parsed as a root daemon must: bounded and checked before they are built.

A document over 64 KiB is refused unread. The YAML event stream is scanned first (PyYAML's
event parser is not recursive) and the document is refused at the first alias or anchor
(a 378-byte alias bomb once held the daemon 9.6 s at 2.5 GiB), non-standard tag, second
document or nesting deeper than 16 levels; only then is it constructed, with libyaml's
safe loader where it is built (ten times faster than the pure-Python one on a worst-case
document). The API parses documents in a worker thread, off the event loop. Imported only
when a document is parsed, so an idle daemon does not map PyYAML.
"""

from __future__ import annotations

from typing import Any

import yaml

from sparkd.engine.spec import MAX_DEPTH, MAX_SPEC_BYTES, TOP_KEYS
from sparkd.errors import InvalidSpec, shown

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STANDARD_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq"))
ALIASES_REFUSED = "YAML aliases and anchors are not allowed in a spec; write the values out"


def load(text: str) -> dict[Any, Any]:
    """The spec document as a mapping (validated by `spec.validate` next); InvalidSpec on field spec_yaml."""
    if not isinstance(text, str):
        raise InvalidSpec.one("spec_yaml", f"must be text, got {type(text).__name__}")
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise InvalidSpec.one("spec_yaml", f"larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a few lines")
    _check_events(text)
    try:
        doc = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise InvalidSpec.one("spec_yaml", _yaml_problem(e)) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as e:  # the checks above should prevent these
        raise InvalidSpec.one("spec_yaml", f"cannot be loaded: {type(e).__name__}: {shown(str(e), 200)}") from None
    if not isinstance(doc, dict):
        raise InvalidSpec.one("spec_yaml", "must be a YAML mapping with keys " + ", ".join(TOP_KEYS))
    return doc


def _check_events(text: str) -> None:
    """Refuses, at the first offence, what the loader must never see (see the module doc)."""
    depth = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise InvalidSpec.one("spec_yaml", ALIASES_REFUSED)
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in STANDARD_TAGS:
                raise InvalidSpec.one(
                    "spec_yaml", f"the YAML tag {shown(tag)} is not allowed in a spec; remove it (plain values only)"
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise InvalidSpec.one(
                        "spec_yaml", f"nested deeper than {MAX_DEPTH} levels; a spec needs two (parallelism)"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise InvalidSpec.one("spec_yaml", "holds more than one YAML document; send one spec (one '---')")
    except yaml.YAMLError as e:
        raise InvalidSpec.one("spec_yaml", _yaml_problem(e)) from None
    except (RecursionError, ValueError, TypeError) as e:
        raise InvalidSpec.one("spec_yaml", f"cannot be parsed: {type(e).__name__}: {shown(str(e), 200)}") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.reader.ReaderError):
        char = f"U+{e.character:04X}" if isinstance(e.character, int) else shown(e.character)
        return (
            f"not valid YAML: character {char} at position {e.position} is not allowed; "
            'write control characters as escapes in a double-quoted string ("\\t")'
        )
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        where = f" at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}" if e.problem_mark else ""
        return f"not valid YAML{where}: {shown(e.problem, 200)}"
    return f"not valid YAML: {shown(str(e), 200)}"
