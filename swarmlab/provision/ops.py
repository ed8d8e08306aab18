"""Small pyinfra operations swarmlab needs and pyinfra lacks."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.operation import OperationMeta

from swarmlab.provision.facts import UnitActiveState
from swarmlab.provision.shell import argv


@operation(is_idempotent=False)
def fail(message: str):
    """Fail this host with a clear message (nothing else runs on it afterwards)."""

    def _fail(state, host) -> bool:
        host.log_styled(message, fg="red", log_func=logger.error)
        return False

    yield FunctionCommand(_fail, (), {})


# a deliberate restart first clears systemd's start counter: docker.service allows 3 starts in
# 60 s, and a deploy that restarts docker right after a crash, an edit or another restart would
# otherwise be refused ("start of the service was attempted too often")
DOCKER_RESTART = ("systemctl reset-failed docker.service", "systemctl restart docker.service")


@operation()
def units_not_failed(units: list[str]):
    """`systemctl reset-failed` the units in the failed state (a start limit hit refuses a
    plain start), so the next operation can start them."""
    failed = [u for u, s in host.get_fact(UnitActiveState, units=units).items() if s.strip() == "failed"]
    if failed:
        yield argv("systemctl", "reset-failed", *failed)
    else:
        host.noop(f"{', '.join(units)}: none failed")


def changed(meta: OperationMeta) -> bool:
    """Whether an earlier operation changed (or, before execution, will change) the host."""
    return meta.did_change() if meta.is_complete() else meta.will_change
