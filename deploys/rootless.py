"""Rootless Docker daemons for the spec's rootless.users (beside the rootful engine).

    pyinfra inventories/lab.py deploys/rootless.py
"""

from swarmlab.provision.rootless import rootless_docker

rootless_docker()
