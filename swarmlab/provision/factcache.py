"""Many facts in one SSH round trip, and each answer kept until the host changes.

pyinfra 3.10 runs a command for every `host.get_fact` call (it keeps no fact cache), so a
no-change deploy used to cost one SSH+sudo round trip per fact (~55 per node). Here:

* `declare(requests)` lists facts (pyinfra's own, e.g. `File(path=...)`, or swarmlab's) the
  deploy will ask; the first fact read on the host then runs all of them as one `FactBatch`
  command and parses each part with its own fact class;
* every answer (batched or read alone) is kept per host and run, and dropped as soon as an
  operation on any host of the run has changed something (a worker's join changes the manager's
  member list), or `invalidate` is called after a change made outside operations, so a later
  read sees the lab as it is then.

Nothing is decided from the cache that would not be decided from a fresh read: a part that
exits non-zero, or whose required command is missing, is not kept (the fact is read alone,
with pyinfra's own error handling). A declared fact the run never asks costs nothing but its
share of the one batch command.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.api.facts import ShortFactBase
from pyinfra.context import ctx_host

MARK = "@@swarmlab-fact-batch"

Request = tuple[type[FactBase], dict[str, Any]]


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def fact_key(cls: type[FactBase], args: tuple, kwargs: dict[str, Any]) -> tuple:
    """How a fact request is known in the cache: class, positional and keyword arguments."""
    return cls, _freeze(args), _freeze(kwargs)


def _command(attribute, kwargs: dict[str, Any]):
    return attribute(**kwargs) if callable(attribute) else attribute


class FactBatch(FactBase):
    """Several facts' own commands in one shell command; -> {index: the fact's value} for
    the parts that exited 0 (a part whose required command is missing is left out).

    Each part is parsed by the same fact object that built its command (some facts keep
    their arguments from `command` for `process`).
    """

    default = dict

    def command(self, requests: tuple[Request, ...]) -> StringCommand:
        bits: list = []
        self.facts = [cls() for cls, _ in requests]
        for index, (_, kwargs) in enumerate(requests):
            fact = self.facts[index]
            command = _command(fact.command, dict(kwargs))
            run = ["(", command, "); echo", QuoteString(f"{MARK} R {index}"), '"$?";']
            required = _command(fact.requires_command, dict(kwargs))
            bits += ["echo", QuoteString(f"{MARK} B {index}"), ";"]
            if required:
                bits += ["if command -v", QuoteString(str(required)), ">/dev/null 2>&1; then",
                         *run, "else echo", QuoteString(f"{MARK} M {index}"), "; fi;"]
            else:
                bits += run
        bits.append("true")
        return StringCommand(*bits)

    def process(self, output):
        values = {}
        for index, (rc, lines) in self.parts(output).items():
            if rc == 0:
                fact = self.facts[index]
                values[index] = fact.process(lines) if lines else fact.default()
        return values

    @staticmethod
    def parts(output: list[str]) -> dict[int, tuple[int | None, list[str]]]:
        """index -> (exit code, None when the required command is missing; output lines)."""
        parts: dict[int, tuple[int | None, list[str]]] = {}
        index: int | None = None
        lines: list[str] = []
        for text in output:
            at = text.find(MARK + " ")
            if at < 0:
                if index is not None:
                    lines.append(text)
                continue
            if at > 0 and index is not None:  # the part's last line had no newline
                lines.append(text[:at])
            kind, _, rest = text[at + len(MARK) + 1:].partition(" ")
            words = rest.split()
            if kind == "B":
                index, lines = int(words[0]), []
            elif kind in ("R", "M") and index is not None:
                rc = int(words[1]) if kind == "R" and len(words) > 1 and words[1].isdigit() else None
                parts[index] = (rc, lines)
                index, lines = None, []
        return parts


@dataclass
class _HostCache:
    generation: int = -1
    bumps: int = 0
    values: dict[tuple, Any] = field(default_factory=dict)
    pending: dict[tuple, Request] = field(default_factory=dict)
    batched: set[tuple] = field(default_factory=set)  # keys whose value came from the batch
    declared: bool = False


# per pyinfra State (weak: a finished run's answers go with it), then host name
_CACHES: WeakKeyDictionary = WeakKeyDictionary()


def _cache(host) -> _HostCache:
    return _CACHES.setdefault(host.state, {}).setdefault(host.name, _HostCache())


def _generation(host, cache: _HostCache) -> int:
    """How many operations have changed any host of the run so far (plus the host's explicit
    invalidations). Any host, not only this one: the lab is one cluster, and a worker's join or
    a manager's label update changes what the other nodes' facts read (swarm members, state)."""
    changes = 0
    for ops in host.state.ops.values():
        for data in ops.values():
            meta = data.operation_meta
            if meta.is_complete() and meta.did_change():
                changes += 1
    return changes + cache.bumps


def invalidate(host) -> None:
    """Forget the host's answers: something changed it outside pyinfra operations."""
    _cache(host).bumps += 1


def declared(host=None) -> bool:
    """Whether the host's facts for this run were declared already (declare them once)."""
    host = host or ctx_host.get()
    return _cache(host).declared


def declare(requests: Iterable[Request], host=None) -> None:
    """Facts this run will ask on the host: read together at the next fact read."""
    host = host or ctx_host.get()
    enable(host)
    cache = _cache(host)
    cache.declared = True
    for cls, kwargs in requests:
        if issubclass(cls, ShortFactBase):  # read the fact it is derived from
            cls = cls.fact
        cache.pending.setdefault(fact_key(cls, (), kwargs), (cls, dict(kwargs)))


def _run_batch(host, read, cache: _HostCache) -> None:
    requests = [r for key, r in cache.pending.items() if key not in cache.values]
    cache.pending.clear()
    if not requests:
        return
    values = read(FactBatch, requests=tuple(requests))
    for index, (cls, kwargs) in enumerate(requests):
        if index in values:  # else read alone later, with pyinfra's own error handling
            key = fact_key(cls, (), kwargs)
            cache.values[key] = values[index]
            cache.batched.add(key)


def enable(host) -> None:
    """Route the host's fact reads through the cache (once per host object)."""
    if getattr(host, "_swarmlab_fact_cache", False):
        return
    read = host.get_fact

    def get_fact(cls, *args, **kwargs):
        cache = _cache(host)
        generation = _generation(host, cache)
        if generation != cache.generation:
            cache.values.clear()
            cache.batched.clear()
            cache.generation = generation
        key = fact_key(cls, args, kwargs)
        if issubclass(cls, ShortFactBase):  # derived from another fact, e.g. Ipv4Addrs
            base = fact_key(cls.fact, args, kwargs)
            if base in cache.batched:
                return cls().process_data(deepcopy(cache.values[base]))
        if key not in cache.values and key in cache.pending:
            _run_batch(host, read, cache)
        if key not in cache.values:
            cache.values[key] = read(cls, *args, **kwargs)
        # a copy: an operation may change what it got, the next one must see the host's answer
        return deepcopy(cache.values[key])

    host.get_fact = get_fact
    host._swarmlab_fact_cache = True
