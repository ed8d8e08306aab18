"""swarmlab: provision a verified Docker Swarm lab from one lab spec."""

__version__ = "0.1.0"
