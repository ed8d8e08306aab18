"""Swarm ports open to the lab subnet only (ufw / nftables)."""

from swarmlab.provision.firewall import swarm_firewall

swarm_firewall()
