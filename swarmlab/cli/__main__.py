"""`python -m swarmlab.cli`: the `swarmlab` command."""

from swarmlab.cli.app import main

main()
