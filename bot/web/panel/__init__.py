"""The clinicians' web panel: sign-in, the Today page, alert actions (routes in
:mod:`bot.web.panel.routes`, cookies and headers in :mod:`bot.web.panel.security`)."""
