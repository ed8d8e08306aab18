"""pyinfra inventory from the lab spec, found as every swarmlab command finds it (without --spec):
SWARMLAB_SPEC, else ./lab.yaml in the current directory, else a checkout's labs/local.yaml.
It prints the spec it reads.

    SWARMLAB_SPEC=lab.yaml pyinfra --dry inventories/lab.py deploys/swarm.py     # the plan
    SWARMLAB_SPEC=lab.yaml pyinfra -y [--limit node1] inventories/lab.py deploys/swarm.py
"""

import sys

from swarmlab.control.inventory import lab_groups
from swarmlab.model.spec import SpecError
from swarmlab.model.specfile import find_spec

try:
    found = find_spec()
    if found is not None:
        print(f"swarmlab inventory: {found.line()}", file=sys.stderr)
    managers, workers = lab_groups()
except SpecError as err:
    raise SystemExit(str(err)) from None
