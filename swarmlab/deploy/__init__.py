"""Reusable pyinfra deploys; the files in deploys/ call these."""
