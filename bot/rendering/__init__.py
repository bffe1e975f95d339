"""Every word and picture a person reads: the Jinja renderer over ``templates/``
(:mod:`.renderer`), GSM-7 for SMS (:mod:`.gsm7`), and the trend chart (:mod:`.trend` the
values, :mod:`.chart` the matplotlib drawing, imported only when a chart is drawn).

Imports ``bot.domain``, ``bot.config`` and ``bot.instruments`` only: rendering is handed
data, it never loads any."""
