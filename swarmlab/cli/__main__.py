"""`python -m swarmlab.cli`: the `swarmlab` command."""

from swarmlab.cli.commands.app import main

main()
