"""Protocols become check-in rows: the planner (:mod:`.planner`: the tick's planning stage,
re-planning, the operator's changes), the rows a pass reads and writes (:mod:`.rows`),
treatment sessions and recorded changes (:mod:`.session_changes`), protocol checks and the
preview (:mod:`.protocols`). When a check-in is due is decided by the pure
``bot.domain.schedule``.
"""
