"""Docker Engine + buildx + compose v2 on every node of the spec.

    pyinfra inventories/lab.py deploys/docker.py
"""

from swarmlab.provision.docker import install_docker

install_docker()
