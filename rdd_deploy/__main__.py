"""`python -m rdd_deploy ...` (and `torchrun -m rdd_deploy distill ...`) is the `rdd-deploy` command."""

from rdd_deploy.cli import run

run()
