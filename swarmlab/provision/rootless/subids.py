"""Subordinate uid/gid ranges for rootless users (/etc/subuid, /etc/subgid).

Hand-written: pyinfra has no operation for subordinate ids (`server.user` does not add them).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Users

from swarmlab.provision.shell import line as shell_line
from swarmlab.provision.shell import q

SUBID_FILES = ("/etc/subuid", "/etc/subgid")
SUBID_COUNT = 65536
SUBID_MIN = 100000  # login.defs SUB_UID_MIN / SUB_GID_MIN defaults
SUBID_MAX = 600100000  # login.defs SUB_UID_MAX / SUB_GID_MAX defaults


def parse_subids(lines: list[str] | None) -> list[tuple[str, int, int]]:
    """(owner, start, count) entries of /etc/subuid or /etc/subgid; bad lines are skipped."""
    out = []
    for line in lines or []:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0].startswith("#"):
            continue
        try:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        except ValueError:
            continue
    return out


def allocate_subids(entries: list[tuple[str, int, int]], owners: set[str],
                    count: int = SUBID_COUNT, low: int = SUBID_MIN,
                    high: int = SUBID_MAX) -> int | None:
    """Start of a new `count`-id range for a user, or None when one of theirs is big enough.

    `owners` are the names an entry may use for the user (name and uid). The new range is the
    lowest one at or above `low` that overlaps no range of any owner; ValueError when none fits
    below `high`.
    """
    if any(owner in owners and n >= count for owner, _, n in entries):
        return None
    start = low
    for _, s, n in sorted(entries, key=lambda e: e[1]):
        if s + n <= start:
            continue
        if s >= start + count:
            break
        start = s + n
    if start + count > high:
        raise ValueError(f"no free range of {count} subordinate ids below {high}")
    return start


@operation()
def subid_range(user: str, path: str):
    """Append a range of SUBID_COUNT ids for `user` to path unless it has one; no overlaps."""
    uid = (host.get_fact(Users).get(user) or {}).get("uid")
    entries = parse_subids(host.get_fact(FileContents, path=path))
    owners = {user} | ({str(uid)} if uid is not None else set())
    start = allocate_subids(entries, owners)
    if start is None:
        host.noop(f"{user} has a range of {SUBID_COUNT} ids in {path}")
        return
    yield shell_line("echo", q(f"{user}:{start}:{SUBID_COUNT}"), ">>", q(path))

