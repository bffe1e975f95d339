"""Alert digests in the core: the order a digest lists its notices in, and the
``[alerts] digest_window_s`` setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.alerts import DEFAULT_RULES
from bot.domain.alerts.config import rules_from_mapping
from bot.domain.alerts.digest import digest_order
from bot.domain.errors import ConfigError
from bot.domain.events import AlertNotice

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def notice(code: str, level: str, seconds: float = 0) -> AlertNotice:
    return AlertNotice(code, "rule", level, "P", {}, 0, T0 + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("why", "given", "listed"),
    [
        ("a crisis raised last comes first",
         [notice("A", "routine"), notice("B", "urgent", 1), notice("C", "crisis", 2)], "CBA"),
        ("same level: the older first",
         [notice("B", "urgent", 2), notice("A", "urgent", 1)], "AB"),
        ("two crises: both before the rest, the older first",
         [notice("A", "info"), notice("C", "crisis", 3), notice("B", "crisis", 1)], "BCA"),
    ],
)  # fmt: skip
def test_a_digest_lists_the_most_urgent_first(
    why: str, given: list[AlertNotice], listed: str
) -> None:
    assert "".join(n.code for n in digest_order(given)) == listed, why


@pytest.mark.parametrize(
    ("given", "window"),
    [({}, DEFAULT_RULES.digest_window), ({"digest_window_s": 0}, timedelta(0)),
     ({"digest_window_s": 2.5}, timedelta(seconds=2.5))],
)  # fmt: skip
def test_the_digest_window_is_configured_in_seconds(
    given: dict[str, float], window: timedelta
) -> None:
    assert rules_from_mapping(given, "config.toml").digest_window == window


@pytest.mark.parametrize("bad", [-1, 11, "2", True])
def test_a_digest_window_outside_0_to_10_s_names_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match="digest_window_s"):
        rules_from_mapping({"digest_window_s": bad}, "config.toml")
