"""Subcommands of ``checkin``, grouped by what they touch; bot/cli.py assembles them.

An entrypoint: a command parses its arguments, calls a use case (``bot.app``) through the
application ``bootstrap`` builds, and prints. It never imports ``bot.storage``: opening
transactions and building rows is the use cases' work, shared with the web panel."""
