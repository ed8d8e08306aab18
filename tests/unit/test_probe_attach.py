"""A probe container that joins an overlay tries again only when dockerd's attachment timed out."""

from __future__ import annotations

import pytest

from swarmlab.verify import probe


class Host:
    def __init__(self, errors: list[str]):
        self.errors, self.calls = errors, 0

    def check_output(self, _command: str) -> str:
        self.calls += 1
        if self.errors:
            raise AssertionError(self.errors.pop(0))
        return "cid"


def run(host: Host) -> str:
    return probe.Probe(spec=None, hosts={"n1": host}).run("n1", "p", "--network labnet", "sleep 1")


def test_attach_timeout_is_tried_again():
    host = Host([f"docker: Error response from daemon: {probe.ATTACH_TIMEOUT}, make sure ...: "
                 "context deadline exceeded"])
    assert run(host) == "cid" and host.calls == 2


def test_other_errors_and_a_third_timeout_fail():
    with pytest.raises(AssertionError, match="No such image"):
        run(Host(["No such image"]))
    timeouts = Host([probe.ATTACH_TIMEOUT] * probe.ATTACH_TRIES)
    with pytest.raises(AssertionError, match="attaching"):
        run(timeouts)
    assert timeouts.calls == probe.ATTACH_TRIES
