"""The loop that makes time pass: due check-ins, expiry, recovery, outbox delivery.

An entrypoint over ``bot`` (``bot.bootstrap`` and the use cases in ``bot.app``); nothing in
``bot`` below the entrypoints imports it."""
