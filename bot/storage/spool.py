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
* **At least once, in order.** The reader's progress (a byte offset, how many records
  lie before it, and the file's generation) is in ``<spool>.state``, replaced
  atomically. A crash between recording messages in the inbox and saving the progress
  reads them again; the inbox drops them by provider id (``MessageSid``). Once
  everything is consumed the file is emptied and its generation goes up, so a position
  read before that (by a slower reader in another process) consumes nothing after it.
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
    kind: str = "text"  # "button": a tapped WhatsApp button, text "<item key>=<value>"


@dataclass(frozen=True)
class Mark:
    """A position in the spool: just after one record, in one generation of the file."""

    generation: int
    offset: int


@dataclass(frozen=True)
class State:
    offset: int = 0  # bytes consumed
    consumed: int = 0  # records in them
    generation: int = 0  # emptied this many times


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
        # (generation, bytes scanned, records in them): counting new records only
        self._scan = (0, 0, 0)

    def append(self, message: Spooled) -> bool:
        token = active_ring().encrypt(LABEL, json.dumps(_fields(message)))
        stamp = int(message.received_at.timestamp() * 1000)
        with self._locked() as fd:
            state = self._state()
            if self._records(fd, state) - state.consumed >= self.max_messages:
                return False
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            line = (b"\n" if torn else b"") + f"{stamp} {token}\n".encode("ascii")
            os.write(fd, line)
            os.fsync(fd)
            return True

    def pending(self, limit: int) -> list[tuple[Mark, Spooled | None]]:
        with self._locked() as fd:
            state = self._state()
            size = os.fstat(fd).st_size
            unread = size - state.offset
            data = os.pread(fd, unread, state.offset) if unread > 0 else b""
        found: list[tuple[Mark, Spooled | None]] = []
        position = state.offset
        for raw in data.split(b"\n")[:-1][:limit]:  # the last piece: unterminated or empty
            position += len(raw) + 1
            found.append((Mark(state.generation, position), _read(raw, position)))
        return found

    def consume(self, upto: Mark) -> None:
        with self._locked() as fd:
            state = self._state()
            if upto.generation != state.generation or upto.offset <= state.offset:
                return  # consumed already, by another reader
            size = os.fstat(fd).st_size
            read = os.pread(fd, upto.offset - state.offset, state.offset).count(b"\n")
            if upto.offset >= size:  # all of it: start again (state first, see docstring)
                self._save_state(State(generation=state.generation + 1))
                os.ftruncate(fd, 0)
                os.fsync(fd)
            else:
                self._save_state(State(upto.offset, state.consumed + read, state.generation))

    def status(self) -> SpoolStatus:
        with self._locked() as fd:
            state = self._state()
            depth = self._records(fd, state) - state.consumed
            head = os.pread(fd, 24, state.offset) if depth > 0 else b""
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

    def _records(self, fd: int, state: State) -> int:
        """Records in the file (a torn last line not counted), scanning only what is new
        since the last count in this generation of the file."""
        size = os.fstat(fd).st_size
        generation, scanned, records = self._scan
        if generation != state.generation or scanned > size:
            scanned, records = 0, 0  # emptied since (by this process or another)
        if size > scanned:
            data = os.pread(fd, size - scanned, scanned)
            records += data.count(b"\n")
            scanned += data.rfind(b"\n") + 1
        self._scan = (state.generation, scanned, records)
        return records

    def _state(self) -> State:
        try:
            offset, consumed, generation = self.state_path.read_text(encoding="ascii").split()
            return State(int(offset), int(consumed), int(generation))
        except FileNotFoundError:
            return State()
        except ValueError:
            log.error(
                "spool state %s is damaged; reading the spool from its start", self.state_path
            )
            return State()

    def _save_state(self, state: State) -> None:
        temporary = self.state_path.with_name(self.state_path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE)
        try:
            line = f"{state.offset} {state.consumed} {state.generation}\n"
            os.write(fd, line.encode("ascii"))
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
        "kind": message.kind,
    }


def _read(raw: bytes, position: int) -> Spooled | None:
    """The message in one line; None (logged by position only) if it cannot be read."""
    try:
        _, token = raw.decode("ascii").split(" ", 1)
        fields = json.loads(decrypt(LABEL, token))
        return Spooled(
            fields["channel"], fields["provider_id"], fields["sender"], fields["text"],
            datetime.fromisoformat(fields["received_at"]), fields.get("kind", "text"),
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
