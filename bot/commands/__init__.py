"""Subcommands of ``checkin``, grouped by what they touch; bot/cli.py assembles them."""
