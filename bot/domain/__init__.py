"""The pure core: frozen values and pure functions, time always an argument. Imports the
standard library and ``bot.domain`` only (mypy runs strict here).

Families live in sub-packages with a small public surface in their ``__init__``
(``alerts/``, ``schedule/``, and ``definitions/``: TOML tables -> instruments); the rest
are one module each: ``instruments`` (the model), ``parsing``, ``scoring``, ``outcomes``,
``conversation`` (the state machine's steps) with ``conversation_state`` (its frozen state
and JSON form), ``risk`` (risk language and endorsements in words), ``late`` (a late answer
to a safety item), ``crisis`` (which crisis lines a patient gets), ``events`` (intents and
events) and ``errors``.
"""
