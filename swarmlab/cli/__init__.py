"""The user interface: the `swarmlab` command, the pipeline it drives and what it prints."""
