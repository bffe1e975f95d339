"""The clinicians' web panel's use cases: accounts and sign-in, who may see which patient,
the Today page. The routes in ``bot.web.panel`` call them; so does ``checkin clinician``."""
