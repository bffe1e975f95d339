"""Alerts in the shell: triggers become alert rows and clinician notices (:mod:`.alerting`),
a clinician's chat commands (:mod:`.desk`), acknowledging and resolving (:mod:`.actions`),
messages to clinicians (:mod:`.notices`), and the tick's escalation stage
(:mod:`.escalation`). The rules and the lifecycle are pure, in ``bot.domain.alerts``.

Imports as every use case does (``bot.app``'s docstring); never ``bot.app.conversations``
(the conversations raise alerts, not the other way round).
"""
