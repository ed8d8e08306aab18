"""Learning with the lab: `swarmlab trace` (a real packet, the kernel's own rule trace on every
node it crosses, the VXLAN on the wire) and `swarmlab exercise` (break-and-fix exercises)."""
