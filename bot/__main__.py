"""``python -m bot`` runs the ``checkin`` command."""

from bot.cli import main

main()
