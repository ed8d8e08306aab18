"""The whole lab: kernel, packages, network, Docker, rootless users, firewall, then the swarm.

    pyinfra inventories/lab.py deploys/swarm.py
"""

from swarmlab.provision.docker import install_docker
from swarmlab.provision.firewall import swarm_firewall
from swarmlab.provision.kernel import kernel_prerequisites
from swarmlab.provision.lab_packages import lab_packages
from swarmlab.provision.network import static_address
from swarmlab.provision.rootless import rootless_docker
from swarmlab.provision.swarm import form_swarm
from swarmlab.provision.tls import docker_tls

kernel_prerequisites()
lab_packages()
static_address()
install_docker()
docker_tls()
rootless_docker()
swarm_firewall()
form_swarm()
