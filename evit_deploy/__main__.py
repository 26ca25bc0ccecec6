"""``python -m evit_deploy`` = the ``evit-deploy`` command."""

from .cli import main

main()
