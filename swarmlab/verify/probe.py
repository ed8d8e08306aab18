"""A tiny probe image (busybox) built on each node from the node's own packages.

No registry is needed: the busybox binary comes from the distro's package, is unpacked
(not installed) and `docker import`ed. Everything the probe starts carries a label and is
removed by `cleanup()`.
"""

from __future__ import annotations

import hashlib
import os
import shlex

from swarmlab.control.parallel import on_each
from swarmlab.model.spec import LabSpec

ATTACH_TIMEOUT = "attaching to network failed"  # dockerd's words when the manager did not answer
ATTACH_TRIES = 3

# per pytest-xdist worker, so one worker's cleanup never removes another's workloads
LABEL = f"swarmlab.probe={os.environ.get('PYTEST_XDIST_WORKER', 'main')}"

# package family -> shell that leaves the busybox binary at ./busybox (in a temp dir)
FETCH_BUSYBOX = {
    "apt": (
        "apt-get download busybox-static >/dev/null 2>&1 || "
        "{ apt-get update -qq >/dev/null && apt-get download busybox-static >/dev/null 2>&1; }; "
        "dpkg-deb -x busybox-static_*.deb pkg && cp $(find pkg -type f -name busybox -size +100k | head -1) busybox"
    ),
    "pacman": (
        "pacman -Sw --noconfirm --cachedir . busybox >/dev/null && mkdir pkg && "
        "tar -C pkg -xf busybox-*.pkg.tar.* && cp $(find pkg -type f -name busybox -size +100k | head -1) busybox"
    ),
}

BUILD = """
set -e
docker image inspect {image} >/dev/null 2>&1 && exit 0
d=$(mktemp -d -p /var/tmp); trap 'rm -rf "$d"' EXIT; cd "$d"
{fetch}
mkdir -p root/bin root/tmp root/www root/etc
cp busybox root/bin/busybox
for a in $(./busybox --list); do [ "$a" = busybox ] || ln -sf busybox "root/bin/$a"; done
echo 'root:x:0:0:root:/:/bin/sh' > root/etc/passwd
tar -C root -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - {image} >/dev/null
"""

# the tag changes with the recipe, so a node never keeps a probe built by an older one
IMAGE = "swarmlab/probe:" + hashlib.sha256((BUILD + repr(FETCH_BUSYBOX)).encode()).hexdigest()[:10]


class Probe:
    """Build the probe image on every node and run labelled probe workloads."""

    def __init__(self, spec: LabSpec, hosts: dict):
        self.spec = spec
        self.hosts = hosts

    def build_everywhere(self) -> None:
        from swarmlab.model.distros import DISTROS

        def build(node) -> str:
            script = BUILD.format(image=IMAGE, fetch=FETCH_BUSYBOX[DISTROS[node.distro].family])
            return self.hosts[node.name].check_output(f"sh -c {shlex.quote(script)}")

        on_each(build, self.spec.nodes)

    def run(self, node: str, name: str, args: str, command: str) -> str:
        """`docker run -d` a labelled probe container (one of that name removed first, in the
        same SSH command); returns its ID. A container joining an attachable overlay waits on
        the manager, which a slow (software-emulated) node can miss within dockerd's deadline:
        that one error is tried again."""
        for attempt in range(ATTACH_TRIES):
            try:
                return self.hosts[node].check_output(
                    f"docker rm -f {name} >/dev/null 2>&1; "
                    f"docker run -d --name {name} --label {LABEL} {args} {IMAGE} {command}"
                )
            except AssertionError as err:
                if ATTACH_TIMEOUT not in str(err) or attempt == ATTACH_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def remove_services(self, services: list[str], stacks: list[str] = ()) -> None:
        """Remove probe services and stacks and wait (bounded) until their tasks' containers
        are gone on every node, all nodes at once: tasks stop asynchronously, and the lab the
        suite hands back (and `swarmlab report` right after it) should hold no probe tasks."""
        manager = self.hosts[self.spec.first_manager.name]
        names = [*services, *(f"{s}_web" for s in stacks)]
        rm = [f"docker service rm {shlex.quote(s)}" for s in services]
        rm += [f"docker stack rm {shlex.quote(s)}" for s in stacks]
        manager.run(" ; ".join(f"{c} >/dev/null 2>&1" for c in rm) + "; true")
        # one `docker ps` per service: repeated label filters are ANDed
        left = "; ".join(f"docker ps -q --filter label=com.docker.swarm.service.name={shlex.quote(n)}"
                         for n in names)
        on_each(lambda h: h.run(f'for i in $(seq 30); do [ -z "$({left})" ] && break; sleep 1; done'),
                self.hosts.values())

    def cleanup(self) -> None:
        manager = self.hosts[self.spec.first_manager.name]
        manager.run(f"docker service ls -q --filter label={LABEL} | xargs -r docker service rm; "
                    f"docker secret ls -q --filter label={LABEL} | xargs -r docker secret rm")
        on_each(lambda h: h.run(f"docker ps -aq --filter label={LABEL} | xargs -r docker rm -f"),
                self.hosts.values())
