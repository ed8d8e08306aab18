"""The lab model: the spec and its schema, per-distro data, where state and shipped files live."""
