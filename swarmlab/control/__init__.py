"""The control machine's side: inventory, SSH config, TLS material, work on every node, child processes."""
