"""Status lines for long steps (issue #17): stages from debootstrap/apt output, throttled, with
a heartbeat while the child is silent; nothing silent for more than ~10 s, never a line per
output line."""

from __future__ import annotations

import sys
from pathlib import Path

from swarmlab.control.progress import Throttle, apt_stage, debootstrap_stage, run_streamed

# Recorded debootstrap 1.0.141 output (trixie, minbase), abridged
DEBOOTSTRAP_OUTPUT = """\
I: Retrieving InRelease
I: Checking Release signature
I: Valid Release signature (key id 4CB50190207B4758A3F73A796ED0E7B82643E131)
I: Retrieving Packages
I: Validating Packages
I: Resolving dependencies of required packages...
I: Resolving dependencies of base packages...
I: Checking component main on http://deb.debian.org/debian...
I: Retrieving adduser 3.152
I: Validating adduser 3.152
I: Retrieving apt 3.0.3
I: Validating apt 3.0.3
I: Extracting adduser...
I: Installing core packages...
I: Unpacking required packages...
I: Unpacking adduser...
I: Configuring required packages...
I: Configuring libc6:amd64...
I: Base system installed successfully.
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_debootstrap_lines_map_to_stages():
    stages = [debootstrap_stage(line) for line in DEBOOTSTRAP_OUTPUT.splitlines()]
    assert stages[0] == "downloading"
    assert "resolving packages" in stages and "unpacking" in stages and "configuring" in stages
    assert stages[-1] == "done"
    assert debootstrap_stage("W: Failure trying to run: chroot") is None
    assert debootstrap_stage("") is None


def test_apt_lines_map_to_stages():
    assert apt_stage("Get:1 http://deb.debian.org/debian trixie InRelease [140 kB]") == "downloading"
    assert apt_stage("Unpacking apt-cacher-ng (3.7.5-1) ...") == "unpacking"
    assert apt_stage("Setting up apt-cacher-ng (3.7.5-1) ...") == "configuring"
    assert apt_stage("debconf: delaying package configuration") is None


def test_first_stage_is_said_at_once_then_at_most_one_line_per_gap():
    clock = Clock()
    gate = Throttle("debootstrap", min_gap=5, heartbeat=10, clock=clock)
    assert gate.update("downloading") == "debootstrap: downloading (0 s)"
    clock.now += 1
    assert gate.update("downloading") is None  # same stage, no news
    assert gate.update("unpacking") is None  # new stage, but only 1 s after the last line
    clock.now += 4
    assert gate.update(None) == "debootstrap: unpacking (5 s)"  # the pending stage, once due
    clock.now += 3
    assert gate.update("unpacking") is None


def test_heartbeat_repeats_the_stage_while_nothing_new_is_said():
    clock = Clock()
    gate = Throttle("debootstrap", min_gap=5, heartbeat=10, clock=clock)
    gate.update("configuring")
    clock.now += 9.9
    assert gate.update(None) is None
    clock.now += 0.1
    assert gate.update(None) == "debootstrap: configuring (10 s)"


def test_a_step_without_stages_says_only_the_heartbeat():
    clock = Clock()
    gate = Throttle("docker import", clock=clock)
    clock.now += 9
    assert gate.update(None) is None
    clock.now += 1
    assert gate.update(None) == "docker import: running (10 s)"
    clock.now += 5
    assert gate.update(None) is None


def test_many_output_lines_give_few_status_lines():
    clock = Clock()
    gate = Throttle("debootstrap", min_gap=5, heartbeat=10, clock=clock)
    said = []
    lines = DEBOOTSTRAP_OUTPUT.splitlines() * 50  # ~1000 lines over 100 s
    for line in lines:
        clock.now += 0.1
        if out := gate.update(debootstrap_stage(line)):
            said.append(out)
    assert 10 <= len(said) <= 21, said  # one every 5-10 s, not one per line
    assert said[0] == "debootstrap: downloading (0 s)"


def test_run_streamed_reports_a_silent_child_and_keeps_its_tail(tmp_path: Path):
    script = "import time,sys\nprint('I: Retrieving InRelease', flush=True)\ntime.sleep(0.6)\n" \
             "print('E: broken', flush=True)\nsys.exit(3)\n"
    said: list[str] = []
    gate = Throttle("debootstrap", min_gap=0.2, heartbeat=0.25)
    result = run_streamed([sys.executable, "-c", script], "debootstrap", said.append,
                          stage_of=debootstrap_stage, throttle=gate, tick=0.05)
    assert result.returncode == 3
    assert result.tail == ["I: Retrieving InRelease", "E: broken"]
    # a loaded machine may start python3 after the first heartbeat: `running` may come first
    assert any(line.startswith("debootstrap: downloading (") for line in said), said
    assert len(said) >= 2, "no heartbeat while the child was silent"
