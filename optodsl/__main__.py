"""`python -m optodsl` is the `opto` command."""

from .cli import main

main()
