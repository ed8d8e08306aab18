"""The whole lab: kernel, packages, network, Docker, rootless users, firewall, then the swarm.

    pyinfra inventories/lab.py deploys/swarm.py
"""

from swarmlab.deploy.docker import install_docker
from swarmlab.deploy.firewall import swarm_firewall
from swarmlab.deploy.kernel import kernel_prerequisites
from swarmlab.deploy.lab import lab_packages
from swarmlab.deploy.network import static_address
from swarmlab.deploy.rootless import rootless_docker
from swarmlab.deploy.swarm import form_swarm
from swarmlab.deploy.tls import docker_tls

kernel_prerequisites()
lab_packages()
static_address()
install_docker()
docker_tls()
rootless_docker()
swarm_firewall()
form_swarm()
