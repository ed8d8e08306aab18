"""pyinfra facts and operations per concern (one module each); the entry points in deploys/ call them."""
