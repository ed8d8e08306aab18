#!/usr/bin/env bash
# Make this machine able to run the container lab: a Docker engine, debootstrap, an SSH client
# (and vagrant for the Vagrantfile checks, sudo for the nightly-cell tests' non-root CI user,
# graphviz for the report page, chromium with SWARMLAB_WITH_BROWSER=1 for its browser test).
# Installs what is missing when root; otherwise says
# exactly what to install. Starts dockerd when no engine answers (with or without systemd).
set -euo pipefail

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ssh >/dev/null || need+=(openssh-client)
command -v iptables >/dev/null || need+=(iptables)
command -v sudo >/dev/null || need+=(sudo)
command -v dot >/dev/null || need+=(graphviz)   # the report page's topology (swarmlab report)
# the report page's browser test only (make test / make live), never for make lab
if [ "${SWARMLAB_WITH_BROWSER:-0}" = 1 ]; then command -v chromium >/dev/null || need+=(chromium); fi
if [ "${SWARMLAB_WITH_VAGRANT:-1}" = 1 ]; then command -v vagrant >/dev/null || need+=(vagrant); fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "swarmlab needs: ${need[*]}. Run as root: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers: start it (sudo systemctl start docker) or run as root" >&2
  exit 1
fi
if [ -d /run/systemd/system ]; then
  systemctl start docker
else
  echo "starting dockerd (no systemd here); log: /var/log/swarmlab-dockerd.log"
  nohup dockerd >/var/log/swarmlab-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not come up; see /var/log/swarmlab-dockerd.log" >&2
exit 1
