"""pyinfra inventory from the lab spec (lab.yaml, or SWARMLAB_SPEC=path).

    pyinfra inventories/lab.py deploys/swarm.py
"""

from swarmlab.control.inventory import lab_groups
from swarmlab.model.spec import SpecError

try:
    managers, workers = lab_groups()
except SpecError as err:
    raise SystemExit(str(err)) from None
