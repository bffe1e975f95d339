"""What leaves the service for other systems and people: CSV and FHIR R4 exports
(:mod:`.exports`, :mod:`.fhir`) and the per-patient series report (:mod:`.report`).

Read-only over ``bot.storage``; may import ``bot.domain``, ``bot.config``, ``bot.logs``,
``bot.instruments``, ``bot.rendering`` and ``bot.app``; never the entrypoints."""
