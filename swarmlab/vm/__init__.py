"""The VM lab: Vagrant boxes built here, libvirt on the host, and the lab's VMs (libvirt provider)."""
