#!/usr/bin/env bash
# Time scripts/host-setup.sh on a fresh Debian 13 machine: a throwaway container of the node
# image (systemd, sshd, sudo, python3; no Docker, debootstrap, iptables or vagrant) with apt's
# defaults restored (the node image turns recommends off). A stub `docker` answers `docker info`
# so only the package installs are timed. Usage: scripts/time-host-setup.sh SCRIPT [ARGS...]
# (SCRIPT: a host-setup.sh, e.g. one from `git show REV:scripts/host-setup.sh`).
set -euo pipefail
script=$(realpath "$1"); shift
image=$(docker images --format '{{.Repository}}:{{.Tag}}' 'swarmlab/node' | grep ':debian-13-' | head -n1)
[ -n "$image" ] || { echo "no swarmlab/node:debian-13-* image: run swarmlab up first" >&2; exit 1; }
docker run --rm --network bridge -v "$script:/host-setup.sh:ro" --entrypoint bash "$image" -c '
  rm -f /etc/apt/apt.conf.d/90swarmlab-norecommends /etc/apt/apt.conf.d/00swarmlab-cache
  printf "#!/bin/sh\nexit 0\n" > /usr/local/bin/docker && chmod +x /usr/local/bin/docker
  start=$(date +%s.%N)
  bash /host-setup.sh "$@"
  end=$(date +%s.%N)
  echo "host-setup.sh $*: $(echo "$end - $start" | bc 2>/dev/null || python3 -c "print(round($end-$start,1))") s"
  echo "packages installed: $(dpkg -l | grep -c ^ii)"
' _ "$@"
