"""Subcommands of ``checkin``, grouped by what they touch; bot/cli.py assembles them.

An entrypoint: a command parses its arguments, calls a use case (``bot.app``) through the
application ``bootstrap`` builds, and prints. It never imports the storage layer: opening
transactions and building rows is the use cases' work, shared with the web panel. A use
case's refusal (``NotFound``, ``Refused``) becomes the command's one-line error, with the
hint that says which command lists the ids."""
