"""Kernel prerequisites and the static lab address (netplan / NetworkManager)."""

from swarmlab.provision.kernel import kernel_prerequisites
from swarmlab.provision.network import static_address

kernel_prerequisites()
static_address()
