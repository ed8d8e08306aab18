# The two commands (both complete on a fresh Debian/Ubuntu machine as root):
#   make lab    container lab up -> deploy -> verify (labs/local.yaml); installs no vagrant
#   make test   unit tests + live tests (they bring up and tear down their own labs); installs
#               vagrant too (the Vagrant docker-provider test)
# and the Vagrant docker-provider path: make vagrant (up -> deploy -> verify), make vagrant-down
# the VM lab (libvirt; KVM where a KVM guest boots, else TCG): make vm-lab, make vm-down;
#   make test-vm   its live test (the nightly workflow runs it; not yet in .ci/run)
VENV ?= .venv
SPEC ?= labs/local.yaml
VAGRANT_SPEC ?= tests/live/labs/vagrant.yaml
VM_SPEC ?= labs/vm.yaml
PYTHON ?= python3

.PHONY: lab test unit live lint package down status bench setup host host-vagrant host-vm browser vagrant \
	vagrant-down vm-lab vm-down test-vm

lab: setup host
	$(VENV)/bin/swarmlab up --spec $(SPEC)

test: setup host-vagrant browser
	$(VENV)/bin/ruff check swarmlab deploys inventories tests bench
	$(VENV)/bin/pytest tests -q -rs --durations=15 --ignore=tests/vm

# the VM lab's live test: box build, 3 VMs, deploy, verify (routing mesh, VIP, ESP), breaks,
# reboots, re-run (slow without KVM: see docs/vms.md)
test-vm: setup host-vm
	$(VENV)/bin/pytest tests/vm -q -rs --durations=15

unit: setup
	$(VENV)/bin/pytest tests/unit -q -rs

live: setup host-vagrant browser
	$(VENV)/bin/pytest tests/live -q -rs

# the wheel: built from the tracked files, installed in a fresh venv, the unit suite run against it
package: setup
	$(VENV)/bin/pytest tests/package -q -rs

lint: setup
	$(VENV)/bin/ruff check swarmlab deploys inventories tests bench

down: setup
	$(VENV)/bin/swarmlab down --spec $(SPEC)

status: setup
	$(VENV)/bin/swarmlab status --spec $(SPEC)

bench: setup host
	$(VENV)/bin/python -m bench
	$(VENV)/bin/python -m bench.readme

setup: $(VENV)/.installed

# editable for development (make test also checks the installed wheel: tests/package)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# what the container lab needs: a Docker engine, debootstrap, ssh, iptables, sudo
host:
	bash scripts/host-setup.sh

# headless Chromium for the report page's browser test (tests/live/report_page.py), not for make lab
browser:
	SWARMLAB_WITH_BROWSER=1 bash scripts/host-setup.sh

# the same and vagrant (with its Ruby stack): only the targets that run Vagrant
host-vagrant:
	bash scripts/host-setup.sh --vagrant

# QEMU, libvirt, vagrant-libvirt and the box-build tools: only the VM lab's targets
host-vm:
	bash scripts/host-setup.sh --vm

# the VM lab: box (built once), VMs, deploy, verify
vm-lab: setup host-vm
	$(VENV)/bin/swarmlab vm up --spec $(VM_SPEC)

vm-down: setup
	$(VENV)/bin/swarmlab vm down --spec $(VM_SPEC)

# the Vagrant docker provider: node image, lab network and key, then vagrant up, deploy, verify
vagrant: setup host-vagrant
	exports="$$($(VENV)/bin/swarmlab vagrant-prep --spec '$(VAGRANT_SPEC)')" && eval "$$exports" && \
	  vagrant up --provider=docker && $(VENV)/bin/swarmlab deploy

vagrant-down: setup
	exports="$$($(VENV)/bin/swarmlab vagrant-prep --env-only --spec '$(VAGRANT_SPEC)')" && \
	  eval "$$exports" && vagrant destroy -f && $(VENV)/bin/swarmlab down
