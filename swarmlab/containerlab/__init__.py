"""The container lab: systemd node containers on a local Docker engine."""
