"""The operator's use cases, shared by the ``checkin`` CLI and (next) the web panel:
patients, clinicians, treatment sessions, schedules, check-ins, alerts and set-aside
inbound messages as an operator handles them; invitations; the audit trail; keys and the
database; discharge and erasure (:mod:`.retention`); the configuration check; the demo's
records. They return plain values (:mod:`.views`) and raise ``bot.domain.errors`` or
:mod:`.refusals`; they never print, exit or know about typer or HTTP.
"""
