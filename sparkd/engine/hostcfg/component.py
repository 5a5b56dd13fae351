"""What every part of the host configuration implements: observe, target, diff, apply, and a record.

A component owns one facility (the twins' links, sparkd's files, RoCE QoS, a kernel module,
the firewall, the hostname). Its state is a mapping from keys (a netdev, a file path, a
module) to items, frozen dataclasses, or None where the thing is absent. Everything the
pipeline does is said in those terms, so that no central match statement grows with each
component (`sparkd.engine.hostcfg.pipeline`):

- plan: `target(desired, key, have)` for each of `keys(desired)`, then `diff(key, want, have)`;
- apply: `apply(change)` for each change, in order;
- verify: observe again, and the diff between the target and what is there must be empty;
- roll back: the prior items were recorded in the intent journal (`dump`), and the diff
  between them (`load`) and what is there now brings the host back, exactly.

`target` and `diff` are pure; `observe` and `apply` are the only calls that touch the host,
through the host adapters. A change is the component's own frozen dataclass; `show()` is
what a plan prints. `diff(key, x, x)` is always empty: re-applying changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sparkd.model.host import DesiredHost, HostAction

#: A recorded item (JSON): what `Component.dump` writes into the intent journal.
Record = Any


class Change(Protocol):
    """One typed change of one component."""

    def show(self) -> HostAction: ...


class Component(Protocol):
    """One facility of the host configuration (see the module's docstring)."""

    #: Short, stable name: the journal's key and the `component` of each action ("links", "files", "qos").
    name: str

    def accepts(self, key: str) -> bool:
        """Whether `key` is one this component could manage: a recorded key is input, and a journal's key that
        is not one is never acted on."""
        ...

    def keys(self, desired: DesiredHost) -> list[str]:
        """What this component manages for `desired` (netdevs, paths, ...), in the order changes apply."""
        ...

    async def observe(self, keys: list[str]) -> Mapping[str, Any]:
        """The items now on the host for `keys` (None for a key whose thing is absent)."""
        ...

    def target(self, desired: DesiredHost, key: str, have: Any) -> Any:
        """The item `key` should be, given what is there (a file's lines sparkd does not own are kept)."""
        ...

    def diff(self, key: str, want: Any, have: Any) -> list[Change]:
        """The changes that turn `have` into `want` ([] when they are equal)."""
        ...

    async def apply(self, change: Change) -> None:
        """Makes one change (a change this component's `diff` returned). Raises HostOperationFailed."""
        ...

    def dump(self, item: Any) -> Record:
        """`item` as JSON, for the intent journal."""
        ...

    def load(self, record: Record) -> Any:
        """The item `dump` wrote; ValueError when the record is not one (a journal is input too)."""
        ...
