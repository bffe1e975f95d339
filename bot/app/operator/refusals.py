"""Why an operator's request was refused, besides ``NotFound``: the errors the operator use
cases raise (patients, clinicians, check-ins, alerts, the inbox, schedules, keys).

Each message is one plain line that names no command or option; an entry point adds its
own hint (the CLI appends ``; add --reassign-to OTHER_ID``). They extend the hierarchy
drawn in bot/domain/errors.py:

    CheckinError
    └── Refused             the records or the configuration do not allow it now
        ├── Deactivated     the clinician named has left the clinic
        ├── StillResponsible  a leaving clinician still has patients or backup duties
        ├── NoProtocol      a patient has no protocol to preview
        └── AlreadyCancelled  a treatment session cancelled before
"""

from __future__ import annotations

from bot.domain.errors import CheckinError


class Refused(CheckinError):
    """What was asked cannot be done now (a wrong status or channel, Telegram not set up)."""


class Deactivated(Refused):
    def __init__(self, clinician_id: int) -> None:
        self.clinician_id = clinician_id
        super().__init__(f"clinician {clinician_id} is deactivated")


class StillResponsible(Refused):
    def __init__(self, clinician_id: int, patients: int, backups: int) -> None:
        self.clinician_id = clinician_id
        self.patients = patients
        self.backups = backups
        super().__init__(
            f"clinician {clinician_id} is responsible for {patients} patients and "
            f"backup for {backups} clinicians"
        )


class NoProtocol(Refused):
    def __init__(self, patient_id: int) -> None:
        self.patient_id = patient_id
        super().__init__(f"patient {patient_id} has no protocol")


class AlreadyCancelled(Refused):
    def __init__(self, session_id: int, at: str) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} was already cancelled ({at}); nothing changed")
