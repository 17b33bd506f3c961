"""BentoML and Ray Serve serving the same ResNet18, for `python -m bench.peer_compare` (each in its own venv)."""
