"""Status lines for long child processes (debootstrap, the package cache's apt-get).

The child's output is streamed and mapped to a stage ("downloading", "unpacking", ...); a
`Throttle` decides when a line `label: stage (34 s)` is due: when the stage changes (at most one
line per `min_gap` seconds) and as a heartbeat when nothing new was said for `heartbeat` seconds.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# debootstrap's "I: <Verb> ..." lines -> the stage a user is told about
DEBOOTSTRAP_STAGES = {
    "retrieving": "downloading",
    "validating": "downloading",
    "checking": "resolving packages",
    "resolving": "resolving packages",
    "found": "resolving packages",
    "extracting": "extracting",
    "installing": "installing core packages",
    "unpacking": "unpacking",
    "configuring": "configuring",
    "base": "done",
}
# apt-get's lines -> stage
APT_STAGES = (
    ("Get:", "downloading"), ("Hit:", "reading package lists"),
    ("Reading package lists", "reading package lists"), ("Fetched", "downloading"),
    ("Unpacking", "unpacking"), ("Selecting", "unpacking"), ("Preparing", "unpacking"),
    ("Setting up", "configuring"), ("Processing triggers", "configuring"),
)


def debootstrap_stage(line: str) -> str | None:
    """The stage a debootstrap output line announces, or None."""
    if not line.startswith("I: "):
        return None
    words = line[3:].split()
    return DEBOOTSTRAP_STAGES.get(words[0].lower()) if words else None


def apt_stage(line: str) -> str | None:
    """The stage an apt-get output line announces, or None."""
    for prefix, stage in APT_STAGES:
        if line.startswith(prefix):
            return stage
    return None


@dataclass
class Throttle:
    """When to print `label: stage (N s)`: the first stage at once, a new stage once `min_gap`
    seconds passed since the last line, the current stage again after `heartbeat` seconds."""

    label: str
    min_gap: float = 5.0
    heartbeat: float = 10.0
    clock: Callable[[], float] = time.monotonic
    start: float = field(init=False)
    stage: str | None = field(init=False, default=None)
    _said: str | None = field(init=False, default=None)
    _last: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def update(self, stage: str | None = None) -> str | None:
        """Note a stage (None: no news, only time passed); the line to print now, if any."""
        now = self.clock()
        if stage:
            self.stage = stage
        if self.stage is None:
            if now - (self._last if self._last is not None else self.start) < self.heartbeat:
                return None
            self._last = now
            return f"{self.label}: running ({now - self.start:.0f} s)"
        if self._last is None:
            due = True
        elif self.stage != self._said:
            due = now - self._last >= self.min_gap
        else:
            due = now - self._last >= self.heartbeat
        if not due:
            return None
        self._said, self._last = self.stage, now
        return f"{self.label}: {self.stage} ({now - self.start:.0f} s)"


@dataclass
class StreamResult:
    """Exit code, the output's last lines and the seconds it took."""

    returncode: int
    tail: list[str]
    seconds: float


def run_streamed(cmd: list[str], label: str, out: Callable[[str], None],
                 stage_of: Callable[[str], str | None] = lambda _: None,
                 throttle: Throttle | None = None, tick: float = 1.0,
                 input: str | None = None, sink: Callable[[str], None] | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> StreamResult:
    """Run `cmd` (stderr into stdout), reporting its stage through `throttle` as lines arrive
    and every `tick` seconds while it is silent. Keeps the last 30 lines for error messages;
    `sink` gets every line."""
    gate = throttle or Throttle(label)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            text=True, errors="replace", env=env, cwd=cwd)
    if input is not None:
        assert proc.stdin is not None
        proc.stdin.write(input)
        proc.stdin.close()
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail: deque[str] = deque(maxlen=30)
    while True:
        try:
            line = lines.get(timeout=tick)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            tail.append(line)
            if sink is not None:
                sink(line)
        said = gate.update(stage_of(line) if line else None)
        if said:
            out(said)
    proc.wait()
    return StreamResult(proc.returncode, list(tail), gate.clock() - gate.start)
