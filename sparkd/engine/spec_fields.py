"""Checks of single spec values: names, paths, counts, argv words. Each returns the problem in words
(None when the value is fine); every value echoed goes through `sparkd.errors.shown`."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from typing import Any

from sparkd.errors import InvalidSpec, shown

# 1-40 of [a-z0-9-], starting with a letter, no '--' and no trailing '-' (unit names are
# sparkd-NAME-rankN.service: a name must not be able to look like another's unit). Anchored at
# both ends (\A, \Z) so that match, search and fullmatch all agree; a trailing newline never passes.
NAME_RE = re.compile(r"\A(?=[a-z0-9-]{1,40}\Z)[a-z](?:-?[a-z0-9])*\Z")
NAME_RULE = "1-40 lowercase letters, digits or single '-' between them, starting with a letter"
MAX_PARALLEL = 64  # per dimension and for the world size (pipeline * tensor)
MAX_PATH_BYTES = 4096  # PATH_MAX
MAX_PATH_COMPONENT_BYTES = 255  # NAME_MAX
MAX_SERVED_NAME_CHARS = 128
MAX_ARG_BYTES = 4096
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # control, format, surrogate, line/paragraph sep


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def key_path(key: object, prefix: str = "") -> str:
    """The field path of a mapping key: the key itself if it is short plain text, else its repr."""
    if isinstance(key, str) and 0 < len(key) <= 60 and key.isprintable():
        return prefix + key
    return prefix + shown(key, 40)


def bad_char(text: str) -> str | None:
    """The first control, format, surrogate or line-separator character of `text`, shown; None if none."""
    for c in text:
        if ord(c) < 0x20 or ord(c) == 0x7F or unicodedata.category(c) in _BAD_CATEGORIES:
            return shown(c)
    return None


def validate_name(value: object, field: str = "name") -> str:
    """Returns `value` if it is a valid deployment name; else raises InvalidSpec on `field`."""
    problem = name_problem(value)
    if problem is not None:
        raise InvalidSpec.one(field, problem)
    assert isinstance(value, str)
    return value


def name_problem(value: object) -> str | None:
    if value is None or value == "":
        return f"required: {NAME_RULE}"
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        return f"must be {NAME_RULE}; got {shown(value)}"
    return None


def path_problem(model: object, what: str = "the model directory (holds config.json)") -> str | None:
    if model is None or model == "":
        return f"required: the absolute path of {what}"
    if not isinstance(model, str):
        return f"must be the absolute path of {what}, got {shown(model)}"
    if (c := bad_char(model)) is not None:
        return f"must not contain control or format characters (found {c}); got {shown(model)}"
    if len(model.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes long; got {shown(model)}"
    if not model.startswith("/"):
        return f"must be an absolute path (start with '/'); got {shown(model)}"
    parts = model.split("/")
    if ".." in parts:
        return f"must not contain '..'; write the path out; got {shown(model)}"
    if "//" in model:
        return f"must not contain '//'; got {shown(model)}"
    if posixpath.normpath(model) != model:
        return f"must be a normalized path, like {shown(posixpath.normpath(model))}; got {shown(model)}"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_PATH_COMPONENT_BYTES for p in parts):
        return f"has a path component longer than {MAX_PATH_COMPONENT_BYTES} bytes; got {shown(model)}"
    if "$" in model:
        return f"must not contain '$' (systemd would expand it as a variable in the command line); got {shown(model)}"
    return None


def served_problem(served: object) -> str | None:
    rule = (
        f"1-{MAX_SERVED_NAME_CHARS} printable characters without whitespace "
        "(for example meta-llama/Llama-3.1-70B-Instruct)"
    )
    if not isinstance(served, str) or not served:
        return f"must be {rule}; got {shown(served)}"
    if len(served) > MAX_SERVED_NAME_CHARS:
        return f"must be at most {MAX_SERVED_NAME_CHARS} characters; got {shown(served)}"
    if (c := bad_char(served)) is not None or not served.isprintable() or any(ch.isspace() for ch in served):
        found = c or shown(next(ch for ch in served if not ch.isprintable() or ch.isspace()))
        return f"must be {rule}; found {found} in {shown(served)}"
    if served.startswith("-"):
        return f"must not start with '-' (it would read as a framework option); got {shown(served)}"
    if "$" in served:
        return f"must not contain '$' (systemd would expand it as a variable in the command line); got {shown(served)}"
    return None


def count(value: object) -> tuple[int, str | None]:
    """A parallelism size and the problem with it (None if it is fine)."""
    n = integer(value)
    rule = f"an integer from 1 to {MAX_PARALLEL}"
    if value is None:
        return 0, f"required: {rule}"
    if n is None or not 1 <= n <= MAX_PARALLEL:
        return 0, f"must be {rule}, got {shown(value)}"
    return n, None


#: Directories a model (or draft model, or environment) may not be in: the system's, sparkd's own (its key,
#: its sockets), the docker socket's, and the private /tmp a deployment unit gets (which hides the host's).
SYSTEM_DIRS = (
    "/etc", "/root", "/run", "/var/run", "/var/lib", "/proc", "/sys", "/dev", "/boot", "/tmp", "/var/tmp",
    "/usr/lib/sparkd",
)  # fmt: skip


def system_dir_problem(path: str) -> str | None:
    """Why `path` (a valid absolute path) is one a deployment must not read or mount, or None."""
    for d in SYSTEM_DIRS:
        if path == d or path.startswith(d + "/"):
            hidden = " (a unit's /tmp is its own)" if d in ("/tmp", "/var/tmp") else ""
            return f"must not be under {d}{hidden}: put models under a directory of their own, such as /models"
    return None


def word_problem(value: object, what: str = "an argument") -> str | None:
    """A command-line word: a string of at most MAX_ARG_BYTES, no control or format characters, no '$'."""
    if not isinstance(value, str):
        return f"must be a string ({what}), got {shown(value)}"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ARG_BYTES:
        return f"must be at most {MAX_ARG_BYTES} bytes long; got {shown(value)}"
    if (c := bad_char(value)) is not None:
        return f"must not contain control or format characters (found {c}); got {shown(value)}"
    if "$" in value:
        return f"must not contain '$' (systemd would expand it as a variable in the command line); got {shown(value)}"
    return None
