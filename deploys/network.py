"""Kernel prerequisites and the static lab address (netplan / NetworkManager)."""

from swarmlab.deploy.kernel import kernel_prerequisites
from swarmlab.deploy.network import static_address

kernel_prerequisites()
static_address()
