#!/usr/bin/env bash
# Make this machine able to run the container lab: a Docker engine, debootstrap, an SSH client,
# iptables, sudo (the nightly-cell tests' non-root CI user) and graphviz (the report page).
# Only what the container lab needs:
#   scripts/host-setup.sh            `make lab`
#   scripts/host-setup.sh --vagrant  also vagrant (`make test`'s Vagrant tests, `make vagrant`)
#   scripts/host-setup.sh --vm       also QEMU, libvirt, vagrant-libvirt and the box-build tools
#                                    (`make vm-lab`, `make test-vm`; swarmlab starts libvirtd itself)
# (SWARMLAB_WITH_VAGRANT=1 does the same as --vagrant.) Installs what is missing when root;
# otherwise says exactly what to install. Starts dockerd when no engine answers (with or
# without systemd).
# SWARMLAB_WITH_BROWSER=1 also installs chromium (the report page's browser test: make test/live).
set -euo pipefail

with_vagrant="${SWARMLAB_WITH_VAGRANT:-0}"
with_vm=0
for arg in "$@"; do
  case "$arg" in
    --vagrant) with_vagrant=1 ;;
    --vm) with_vagrant=1; with_vm=1 ;;
    *) echo "usage: $0 [--vagrant|--vm]" >&2; exit 2 ;;
  esac
done

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v ssh >/dev/null || need+=(openssh-client)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v sudo >/dev/null || need+=(sudo)
command -v dot >/dev/null || need+=(graphviz)   # the report page's topology (swarmlab report)
# the report page's browser test only (make test / make live), never for make lab
if [ "${SWARMLAB_WITH_BROWSER:-0}" = 1 ]; then command -v chromium >/dev/null || need+=(chromium); fi
if [ "$with_vagrant" = 1 ]; then command -v vagrant >/dev/null || need+=(vagrant); fi
if [ "$with_vm" = 1 ]; then
  # the VM lab (swarmlab/vm): QEMU + libvirt + Vagrant's libvirt provider; the box is built
  # with debootstrap, sfdisk, extlinux and qemu-img
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v qemu-img >/dev/null || need+=(qemu-utils)
  [ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon-system libvirt-clients)
  ls -d /usr/share/rubygems-integration/all/gems/vagrant-libvirt-* >/dev/null 2>&1 || need+=(vagrant-libvirt)
  command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
  command -v extlinux >/dev/null || [ -x /usr/bin/extlinux ] || need+=(extlinux)
  [ -e /usr/lib/EXTLINUX/mbr.bin ] || [ -e /usr/lib/syslinux/mbr/mbr.bin ] || need+=(syslinux-common)
  command -v sfdisk >/dev/null || [ -x /usr/sbin/sfdisk ] || need+=(fdisk)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "swarmlab needs: ${need[*]}. Fix: run this as root (sudo make lab), or install them" \
         "yourself: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  start=$SECONDS
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  echo "installed ${need[*]} ($((SECONDS - start)) s)"
fi

# each systemd node container holds ~5 inotify instances of the host's per-user limit (often 128):
# 12-node labs beside other labs exit 255 at start. Raise it (only ever up), as kind's docs advise.
min_inotify=512
cur_inotify="$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "$min_inotify")"
if [ "$cur_inotify" -lt "$min_inotify" ]; then
  if [ "$(id -u)" = 0 ] && sysctl -qw fs.inotify.max_user_instances="$min_inotify" 2>/dev/null; then
    echo "raised fs.inotify.max_user_instances $cur_inotify -> $min_inotify (node containers' systemd)"
  else
    echo "note: fs.inotify.max_user_instances is $cur_inotify; labs of more than ~20 nodes in all need" \
         "more. Fix: sudo sysctl -w fs.inotify.max_user_instances=$min_inotify" >&2
  fi
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  if docker info 2>&1 | grep -qi 'permission denied'; then
    echo "the Docker engine runs but $(id -un) may not use it. Fix: sudo usermod -aG docker" \
         "$(id -un) (then log in again), or run as root" >&2
  else
    echo "no Docker engine answers. Fix: sudo systemctl start docker, or run this as root" \
         "(it starts dockerd)" >&2
  fi
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
