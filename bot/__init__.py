"""mbc-checkin: measurement-based-care check-ins. Each folder below is a layer; a layer
imports only the layers listed before it (tests/architecture.py enforces this):

* ``domain/``: the pure core (instruments, parsing, scoring, outcomes, the conversation,
  alerts, schedules). Standard library only.
* ``config/``, ``logs.py``, ``instruments/``: settings from TOML, the log format, the
  instrument catalog. Import only the domain.
* ``storage/``: tables, the database handle, queries, migrations, encryption at rest.
* ``rendering/``: every word and picture a person sees (templates, GSM-7, the trend chart).
* ``app/``: the use cases, one module each, over storage and rendering.
* ``channels/`` (Telegram, SMS, console) and ``outputs/`` (CSV, FHIR, the series report):
  adapters on either side of the use cases.
* ``bootstrap.py``: the one composition root.
* ``web/``, ``cli.py`` and ``commands/`` (and the top-level ``scheduler`` package): the
  entrypoints. They call use cases; they never open a transaction themselves.
"""
