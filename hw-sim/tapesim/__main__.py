"""``python -m tapesim``: the tapesim command."""

from .cli import main

main()
