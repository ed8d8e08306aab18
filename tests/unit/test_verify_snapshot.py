"""swarmlab/verify/snapshot.py: many shared reads in one shell, each result kept apart."""

from __future__ import annotations

import subprocess

import pytest

from swarmlab.verify.snapshot import COMMANDS, Snapshot, parse, script

CASES = ("printf no-newline", "echo out; echo err >&2; exit 3", "cat /nonexistent/swarmlab",
         "echo '{{json .}}'", "printf 'a\\nb\\n'")


def _run_locally(commands: tuple[str, ...]) -> str:
    return subprocess.run(script(commands), shell=True, capture_output=True, text=True, check=True).stdout


def test_each_command_keeps_its_output_stderr_and_exit_code():
    got = parse(_run_locally(CASES), CASES)
    assert set(got) == set(CASES)
    assert (got[CASES[0]].rc, got[CASES[0]].stdout) == (0, "no-newline")
    assert (got[CASES[1]].rc, got[CASES[1]].stdout, got[CASES[1]].stderr) == (3, "out\n", "err\n")
    assert got[CASES[2]].rc != 0 and "No such file" in got[CASES[2]].stderr
    assert got[CASES[3]].stdout == "{{json .}}\n"
    assert got[CASES[4]].stdout == "a\nb\n"


def test_a_failed_read_fails_the_check_that_asks_for_it():
    snap = Snapshot("node1", parse(_run_locally(CASES), CASES))
    assert snap.check_output(CASES[4]) == "a\nb"
    assert not snap.run(CASES[1]).succeeded
    with pytest.raises(AssertionError, match="exit 3"):
        snap.check_output(CASES[1])
    with pytest.raises(KeyError):
        snap.run("a command nobody put in the snapshot")


def test_an_unreadable_host_fails_every_read_with_the_reason():
    snap = Snapshot("node2", {}, "RuntimeError: ssh: connect to host 10.0.0.2 port 22: timed out")
    with pytest.raises(AssertionError, match="could not read node2: RuntimeError"):
        snap.run(COMMANDS[0])


def test_commands_are_unique():
    assert len(COMMANDS) == len(set(COMMANDS))
