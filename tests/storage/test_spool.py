"""The SMS spool on a real file: durable, unreadable at rest, bounded, read back in order,
shared between two handles as between two processes."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import settings_from_mapping
from bot.domain.errors import ConfigError
from bot.storage.spool import FileSpool, Spooled, spool_path

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
SECRET_WORDS = "marmalade spool 7731 low mood"
PHONE = "+15555550177"


def message(n: int, text: str = "2") -> Spooled:
    sid = f"SM{n:032x}"
    return Spooled("sms", sid, PHONE, text, T0 + timedelta(seconds=n))


def texts(spool: FileSpool) -> list[str | None]:
    return [m.text if m else None for _, m in spool.pending(100)]


def test_a_spooled_message_is_encrypted_in_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    """The file is 0600 and holds neither the words, the number nor the MessageSid."""
    spool = FileSpool(tmp_path / "checkin.spool", 10)
    assert spool.append(message(0)) and spool.append(message(1, SECRET_WORDS))
    spool.consume(spool.pending(1)[0][0])  # a partial drain leaves a state file too
    for path in (spool.path, spool.state_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    raw = spool.path.read_bytes()
    for secret in (SECRET_WORDS, PHONE, PHONE[2:], message(1).provider_id):
        assert secret.encode() not in raw
    assert texts(spool) == [SECRET_WORDS]


def test_messages_come_back_in_order_and_consumed_ones_never_again(tmp_path: Path) -> None:
    """Read in the order written; what is consumed is gone, and all consumed empties the file."""
    spool = FileSpool(tmp_path / "checkin.spool", 10)
    for n, text in enumerate(("first", "second", "third")):
        assert spool.append(message(n, text))
    (first, _), (second, _), (third, _) = spool.pending(10)
    spool.consume(second)
    assert texts(spool) == ["third"]
    assert spool.status().depth == 1 and spool.status().oldest_at == message(2).received_at
    spool.consume(first)  # behind what is consumed already: nothing changes
    assert texts(spool) == ["third"]
    spool.consume(third)
    assert spool.status().depth == 0 and spool.status().oldest_at is None
    assert spool.path.stat().st_size == 0 and texts(spool) == []


def test_a_full_spool_keeps_nothing_more_until_it_drains(tmp_path: Path) -> None:
    """At the bound, append refuses (and keeps nothing); consuming makes room again."""
    spool = FileSpool(tmp_path / "checkin.spool", 2)
    assert spool.append(message(1)) and spool.append(message(2))
    assert not spool.append(message(3))
    assert spool.status().depth == 2
    spool.consume(spool.pending(1)[0][0])
    assert spool.append(message(4))
    assert [m.provider_id for _, m in spool.pending(10) if m] == [
        message(2).provider_id, message(4).provider_id,
    ]  # fmt: skip


def test_a_record_torn_by_a_crash_is_skipped_and_the_next_one_kept(tmp_path: Path) -> None:
    """A half-written last line (a crash mid-append, never answered) reads as None, and the
    message appended after it is intact."""
    spool = FileSpool(tmp_path / "checkin.spool", 10)
    assert spool.append(message(1, "before"))
    with spool.path.open("ab") as torn:
        torn.write(b"1772461800000 enc1:abc")
    assert texts(spool) == ["before"]  # the torn tail is not a record yet
    assert spool.append(message(2, "after"))
    assert texts(spool) == ["before", None, "after"]
    spool.consume(spool.pending(10)[-1][0])
    assert spool.status().depth == 0


def test_two_handles_on_one_file_see_each_others_work(tmp_path: Path) -> None:
    """As the web process and a worker on one host: one appends, the other drains."""
    web = FileSpool(tmp_path / "checkin.spool", 3)
    worker = FileSpool(tmp_path / "checkin.spool", 3)
    for n in range(3):
        assert web.append(message(n))
    assert worker.status().depth == 3 and not web.append(message(9))
    worker.consume(worker.pending(10)[-1][0])
    assert web.status().depth == 0 and web.append(message(4))
    assert [m.provider_id for _, m in worker.pending(10) if m] == [message(4).provider_id]


def test_the_spool_is_beside_the_database_or_where_the_configuration_says(tmp_path: Path) -> None:
    """[sms] spool_path is read relative to the file; absent, the spool sits beside a SQLite
    database; a spool_max that is not a positive number is refused naming the key."""
    config = tmp_path / "clinic.toml"
    given = settings_from_mapping({"sms": {"spool_path": "var/in.spool", "spool_max": 50}}, config)
    assert spool_path(given) == tmp_path / "var" / "in.spool" and given.sms.spool_max == 50
    beside = settings_from_mapping({"database": {"url": "sqlite:///data/checkin.db"}}, config)
    assert spool_path(beside) == tmp_path / "data" / "checkin.spool"
    with pytest.raises(ConfigError, match=r"sms\.spool_max: must be a positive number"):
        settings_from_mapping({"sms": {"spool_max": 0}}, config)


def test_a_slow_reader_cannot_consume_what_arrived_after_the_spool_was_emptied(
    tmp_path: Path,
) -> None:
    """A position read before another reader emptied the file consumes nothing of the
    messages appended since (they would be lost, never recorded)."""
    web = FileSpool(tmp_path / "checkin.spool", 10)
    slow = FileSpool(tmp_path / "checkin.spool", 10)
    assert web.append(message(1, "old"))
    ((stale, _),) = slow.pending(10)
    web.consume(web.pending(10)[-1][0])  # the other reader recorded it and emptied the file
    assert web.append(message(2, "new, and longer than the old one"))
    slow.consume(stale)
    assert texts(web) == ["new, and longer than the old one"] and web.status().depth == 1
