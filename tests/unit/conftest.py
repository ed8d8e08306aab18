"""Unit tests touch no host: the reachability check answers for every node as a lab that is up
(port 22) unless a test says otherwise, no ~/.ssh/config is read, and the state directory does
not follow one test's spec into the next."""

from __future__ import annotations

import pytest

from swarmlab.control import reach, sshconfig
from swarmlab.model import state


@pytest.fixture(autouse=True)
def _lab_answers(monkeypatch, tmp_path_factory):
    # the developer's own ~/.ssh/config stays out of the written blocks
    monkeypatch.setattr(sshconfig, "USER_CONFIG", tmp_path_factory.mktemp("home") / "ssh_config")
    monkeypatch.setattr(reach, "check", lambda entries: [
        reach.NodeReach(name, str(data["ssh_hostname"]), None, 22) for name, data in entries])
    yield
    state.follow_spec(None)
