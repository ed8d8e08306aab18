"""The `swarmlab` command: the core commands (commands.py) with the VM lab's (vm.py) and the
learning ones (learn.py) added. The entry point and `python -m swarmlab.cli` run this `main`."""

from swarmlab.cli.commands import main
from swarmlab.cli.learn import exercise, trace
from swarmlab.cli.vm import box_group, vm_group

for command in (trace, exercise, box_group, vm_group):
    main.add_command(command)

__all__ = ["main"]
