"""The inbound spool: SMS made durable on local disk before the database has them.

Twilio does not send an inbound message again, so the ``/sms`` webhook must not answer
before the message is durable, whatever the database is doing (PostgreSQL away, the
SQLite file locked). It appends the message here and answers; the drain (the tick, and a
task in the web process) moves the spool into the inbox, in order, and says how far it
got. Invariants:

* **Durable before answered.** `append` returns after ``fsync`` of the spool file (and,
  when it creates the file, of its directory).
* **Nothing readable at rest.** A record is ``<spooled at, unix ms> <token>\\n``; the token
  is the message (channel, provider id, sender, text, received at) sealed with the
  database's field key ring (:mod:`bot.storage.crypto`, label ``spool.message``). The
  time is in the clear so depth and age are known without a key. The file is mode 0600.
* **Bounded.** At `max_messages` waiting, `append` keeps nothing and returns False: the
  webhook answers 503 and logs it, rather than fill the disk.
* **At least once, in order.** The reader's progress (a byte offset, and how many
  records lie before it) is in ``<spool>.state``, replaced atomically. A crash between
  recording messages in the inbox and saving the progress reads them again; the inbox
  drops them by provider id (``MessageSid``). Once everything is consumed the file is
  emptied.
* **Shared safely.** Every operation holds ``flock`` on the spool file (another process on
  the host, such as a ``checkin worker`` ticking) and a thread lock (appends run in
  threads, off the event loop).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.domain.errors import CheckinError
from bot.storage.crypto import KeyProblem, active_ring, decrypt

log = logging.getLogger(__name__)
LABEL = "spool.message"
MODE = 0o600


class SpoolUnavailable(CheckinError):
    """The spool file cannot be created or opened (its directory, its permissions)."""


@dataclass(frozen=True)
class Spooled:
    """An inbound message held in the spool: what the inbox records, nothing more."""

    channel: str
    provider_id: str
    sender: str
    text: str
    received_at: datetime


@dataclass(frozen=True)
class SpoolStatus:
    depth: int  # messages spooled and not yet in the inbox
    oldest_at: datetime | None  # when the oldest of them was spooled (None: empty)


class FileSpool:
    """The spool at `path` (see the module docstring), holding at most `max_messages`."""

    def __init__(self, path: Path, max_messages: int) -> None:
        self.path = path
        self.state_path = path.with_name(path.name + ".state")
        self.max_messages = max_messages
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._scan = (0, 0, 0)  # (inode, bytes scanned, records in them): counting is incremental

    def append(self, message: Spooled) -> bool:
        token = active_ring().encrypt(LABEL, json.dumps(_fields(message)))
        stamp = int(message.received_at.timestamp() * 1000)
        with self._locked() as fd:
            _, consumed = self._state()
            if self._records(fd) - consumed >= self.max_messages:
                return False
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            line = (b"\n" if torn else b"") + f"{stamp} {token}\n".encode("ascii")
            os.write(fd, line)
            os.fsync(fd)
            return True

    def pending(self, limit: int) -> list[tuple[int, Spooled | None]]:
        with self._locked() as fd:
            offset, _ = self._state()
            size = os.fstat(fd).st_size
            data = os.pread(fd, size - offset, offset) if size > offset else b""
        found: list[tuple[int, Spooled | None]] = []
        position = offset
        for raw in data.split(b"\n")[:-1][:limit]:  # the last piece: unterminated or empty
            position += len(raw) + 1
            found.append((position, _read(raw, position)))
        return found

    def consume(self, upto: int) -> None:
        with self._locked() as fd:
            offset, consumed = self._state()
            if upto <= offset:
                return
            size = os.fstat(fd).st_size
            consumed += os.pread(fd, upto - offset, offset).count(b"\n")
            if upto >= size:  # all of it: start the file again (state first, see docstring)
                self._save_state(0, 0)
                os.ftruncate(fd, 0)
                os.fsync(fd)
                self._scan = (0, 0, 0)
            else:
                self._save_state(upto, consumed)

    def status(self) -> SpoolStatus:
        with self._locked() as fd:
            offset, consumed = self._state()
            depth = self._records(fd) - consumed
            head = os.pread(fd, 24, offset) if depth > 0 else b""
        stamp = head.split(b" ", 1)[0]
        oldest = datetime.fromtimestamp(int(stamp) / 1000, UTC) if stamp.isdigit() else None
        return SpoolStatus(max(depth, 0), oldest)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- the file -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[int]:
        with self._thread_lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, MODE)
                os.fchmod(fd, MODE)  # an older file with a looser mode is tightened
                if created:
                    _sync_directory(self.path.parent)
            except OSError as exc:
                raise SpoolUnavailable(
                    f"sms spool: cannot open {self.path} ({exc.strerror}); set [sms] "
                    "spool_path to a file on a local disk the service may write"
                ) from exc
            self._fd = fd
        return self._fd

    def _records(self, fd: int) -> int:
        """Records in the file (a torn last line not counted), scanning only what is new."""
        stat = os.fstat(fd)
        inode, scanned, records = self._scan
        if inode != stat.st_ino or scanned > stat.st_size:
            inode, scanned, records = stat.st_ino, 0, 0  # emptied by another process
        if stat.st_size > scanned:
            data = os.pread(fd, stat.st_size - scanned, scanned)
            complete = data.rfind(b"\n") + 1
            records += data.count(b"\n")
            scanned += complete
        self._scan = (inode, scanned, records)
        return records

    def _state(self) -> tuple[int, int]:
        try:
            offset, consumed = self.state_path.read_text(encoding="ascii").split()
            return int(offset), int(consumed)
        except FileNotFoundError:
            return 0, 0
        except ValueError:
            log.error(
                "spool state %s is damaged; reading the spool from its start", self.state_path
            )
            return 0, 0

    def _save_state(self, offset: int, consumed: int) -> None:
        temporary = self.state_path.with_name(self.state_path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE)
        try:
            os.write(fd, f"{offset} {consumed}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.state_path)


def _fields(message: Spooled) -> dict[str, str]:
    return {
        "channel": message.channel,
        "provider_id": message.provider_id,
        "sender": message.sender,
        "text": message.text,
        "received_at": message.received_at.isoformat(),
    }


def _read(raw: bytes, position: int) -> Spooled | None:
    """The message in one line; None (logged by position only) if it cannot be read."""
    try:
        _, token = raw.decode("ascii").split(" ", 1)
        fields = json.loads(decrypt(LABEL, token))
        return Spooled(
            fields["channel"], fields["provider_id"], fields["sender"], fields["text"],
            datetime.fromisoformat(fields["received_at"]),
        )  # fmt: skip
    except (KeyProblem, ValueError, KeyError, UnicodeDecodeError) as exc:
        log.error(
            "spool record ending at byte %d cannot be read (%s); skipped. A crash while it "
            "was written tears a record (its webhook was never answered); a key missing "
            "from the ring loses it",
            position, type(exc).__name__,
        )  # fmt: skip
        return None


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_path(settings: Settings) -> Path:
    """[sms] spool_path; else ``<database>.spool`` beside a SQLite database file; else
    ``checkin.spool`` beside the configuration file (or in the working directory)."""
    if settings.sms.spool_path is not None:
        return settings.sms.spool_path
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).with_suffix(".spool")
    source = Path(settings.source)
    return (source.parent if source.is_file() else Path.cwd()) / "checkin.spool"
