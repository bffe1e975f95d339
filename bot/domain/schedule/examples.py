"""The example protocols that config.example.toml ships, as TOML text with their clinical
basis in comments, so the text can be pasted into the example file and tests can check
the two agree. Sources as collected in the project's instruments.md research notes,
sections 9 (ketamine series) and 10 (measurement-based care)."""

from __future__ import annotations

import tomllib
from typing import Any

EXAMPLE_PROTOCOLS_TOML = """\
# weekly-phq9: a PHQ-9 every Monday at 09:00 in the patient's own time zone. Symptoms
# measured often and fed back at the visit improve outcomes; one-time or infrequent
# screening does not (Fortney et al., Psychiatr Serv 2017). Weekly suits the PHQ-9's
# two-week recall.
[protocols.weekly-phq9]
description = "PHQ-9 every Monday morning"

[protocols.weekly-phq9.rules.weekly]
instruments = ["phq9"]
weekdays = ["mon"]
at = "09:00"
reminder_after = "8h"
max_reminders = 1
expires_after = "3d"

# ketamine-iv-6: six IV ketamine infusions, typically three a week for two weeks
# (Murrough 2013; Phillips 2019). Record the sessions (or move / cancel them) and the
# session-relative check-ins follow.
[protocols.ketamine-iv-6]
description = "Six-infusion IV ketamine series, then weekly maintenance"

# Baseline at enrollment: PHQ-9 and GAD-7. The last PHQ-9 before session 1 is the
# baseline that % change, response and remission are measured from.
[protocols.ketamine-iv-6.rules.baseline]
instruments = ["phq9", "gad7"]
from_enrollment = "0h"
reminder_after = "4h"
max_reminders = 2
expires_after = "2d"

# PHQ-9 2 h before each session, so the score is in front of the clinician at the chair.
# With the PHQ-9 24 h after each session it is asked about a day apart, well within its
# two-week recall, and `config check` says so. Kept on purpose: the PHQ-9 is the
# instrument every clinic can ask (English and Spanish, public domain), the one the alert
# and outcome rules and the series report are built on. A clinic with the QIDS-SR16
# licence (7-day recall) should ask it here instead; its wording is never shortened.
[protocols.ketamine-iv-6.rules.before_session]
instruments = ["phq9"]
from_session = "-2h"
max_session = 6
reminder_after = "1h"
max_reminders = 1
expires_after = "3h"

# 24 h after each session: the side-effect check (red flags first) and PHQ-9. Ketamine
# trials rate depression 24 h after every infusion; no >= 20 % improvement at 24 h after
# infusion 4 (or three in a row through infusion 3) signals non-response (Transl
# Psychiatry 2024). The PHQ-9's two-week recall overlaps between sessions: where
# licensed, QIDS-SR16 (7-day recall) tracks a series more closely.
[protocols.ketamine-iv-6.rules.after_session]
instruments = ["side_effects", "phq9"]
from_session = "24h"
max_session = 6
reminder_after = "4h"
max_reminders = 2
expires_after = "24h"

# Maintenance: PHQ-9 every Monday 09:00 from the last recorded session on. Responders
# relapsed after a median of 18 days (Murrough 2013); maintenance is adjusted to the
# lowest frequency that keeps remission (SUSTAIN-2), so loss of response must show early.
[protocols.ketamine-iv-6.rules.maintenance]
instruments = ["phq9"]
weekdays = ["mon"]
at = "09:00"
start = "last_session"
reminder_after = "8h"
max_reminders = 1
expires_after = "3d"
"""


def example_protocols() -> dict[str, Any]:
    """The ``protocols`` table of :data:`EXAMPLE_PROTOCOLS_TOML`, freshly parsed."""
    protocols: dict[str, Any] = tomllib.loads(EXAMPLE_PROTOCOLS_TOML)["protocols"]
    return protocols
