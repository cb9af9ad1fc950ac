"""The round journal: append-only, length-prefixed msgpack records, each with a CRC32.

Record layout: ``<u32 little-endian payload length><u32 CRC32 of payload><msgpack payload>``. A reader stops
at the first truncated or corrupt record (a crash can leave a torn tail); ``Journal.open`` cuts such a tail
off before appending, so the file never holds a corrupt record followed by good ones.

Bounded memory and disk: a ``Journal`` keeps only the last ``recent`` records in memory (what the control
service shows); everything else is read back from the files. With ``max_bytes`` > 0 the live file rotates at a
record boundary once it reaches that size: ``journal.log`` becomes ``journal.log.1`` (``.1`` becomes ``.2``, ...)
and ``keep`` rotated files are kept, the oldest deleted. Every file is a whole record stream, so
``read_journal`` reads the rotated files oldest first and then the live one. A resume rewinds across files:
``rewind_to_round`` cuts the live file and, when every record of it is newer than the checkpoint, drops it and
continues in the newest rotated file (which becomes the live file again).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack

from swarmrl.errors import JournalError
from swarmrl.node.records import RoundRecord, rounds_of

log = logging.getLogger(__name__)
HEADER = struct.Struct("<II")
MAX_RECORD = 64 * 1024 * 1024
#: Records a ``Journal`` keeps in memory (the control service's recent-rewards window is at most this).
RECENT_RECORDS = 256


def encode_record(record: dict[str, Any]) -> bytes:
    payload = msgpack.packb(record, use_bin_type=True)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class ScanResult:
    records: list[dict[str, Any]]
    offsets: list[int]  # end offset of each good record
    valid_bytes: int
    file_bytes: int

    @property
    def torn(self) -> bool:
        return self.valid_bytes != self.file_bytes


def _read_one(fh: IO[bytes]) -> tuple[dict[str, Any], int] | None:
    """The next good record and its size in bytes, or None at the end or at a torn or corrupt record."""
    head = fh.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    length, crc = HEADER.unpack(head)
    if length > MAX_RECORD:
        return None
    payload = fh.read(length)
    if len(payload) < length or zlib.crc32(payload) != crc:
        return None
    try:
        record = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(record, dict):
        return None
    return record, HEADER.size + length


def iter_records(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Stream ``(record, end offset)`` of one file, stopping at the first truncated or corrupt record."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        pos = 0
        while (item := _read_one(fh)) is not None:
            record, size = item
            pos += size
            yield record, pos


def scan(path: Path) -> ScanResult:
    """Read every good record of one file; stop at the first truncated or corrupt one."""
    records: list[dict[str, Any]] = []
    offsets: list[int] = []
    for record, end in iter_records(path):
        records.append(record)
        offsets.append(end)
    size = path.stat().st_size if path.exists() else 0
    return ScanResult(records, offsets, offsets[-1] if offsets else 0, size)


def rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def segments(path: Path) -> list[Path]:
    """The files of a journal, oldest first: ``path.N`` ... ``path.1`` (contiguous from 1), then ``path``."""
    older: list[Path] = []
    i = 1
    while rotated(path, i).exists():
        older.append(rotated(path, i))
        i += 1
    return [*reversed(older), path]


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every good record of a journal, rotated files included, oldest first."""
    return [record for seg in segments(path) for record, _ in iter_records(seg)]


def read_rounds(path: Path) -> list[RoundRecord]:
    """The round records of a journal (rotated files included), oldest first, as typed records."""
    return rounds_of(read_journal(path))


class Journal:
    """Appends records durably (flush + fsync per record); memory holds only the last ``recent`` records.

    ``max_bytes`` = 0 never rotates; ``keep`` is how many rotated files survive a rotation.
    """

    def __init__(self, path: Path, max_bytes: int = 0, keep: int = 0, recent: int = RECENT_RECORDS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self._size = self._load()
        self._fh = open(path, "ab")  # noqa: SIM115 - held open for the node's lifetime

    def _load(self) -> int:
        """Fill ``recent`` from the files and cut a torn tail of the live file; returns its good size."""
        count, valid = 0, 0
        for seg in segments(self.path):
            for record, end in iter_records(seg):
                self.recent.append(record)
                if seg == self.path:
                    count, valid = count + 1, end
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != valid:
            log.warning(
                "journal %s: cutting a torn tail of %d bytes after %d good records",
                self.path,
                size - valid,
                count,
            )
            self._truncate(self.path, valid)
        return valid

    @staticmethod
    def _truncate(path: Path, size: int) -> None:
        with open(path, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, record: dict[str, Any]) -> None:
        blob = encode_record(record)
        try:
            self._fh.write(blob)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise JournalError(f"cannot append to journal {self.path}: {exc}; check disk space") from exc
        self.recent.append(record)
        self._size += len(blob)
        if self.max_bytes and self._size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        """Live file -> ``.1`` (older ones shift up; beyond ``keep`` they are deleted); a fresh live file."""
        self._fh.close()
        try:
            n = len(segments(self.path)) - 1
            for i in range(n, 0, -1):
                if i >= self.keep:
                    rotated(self.path, i).unlink(missing_ok=True)
                else:
                    os.replace(rotated(self.path, i), rotated(self.path, i + 1))
            if self.keep:
                os.replace(self.path, rotated(self.path, 1))
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot rotate journal {self.path}: {exc}; check the directory") from exc
        finally:
            self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
        log.debug("rotated %s (%d older files kept)", self.path, self.keep)

    def rewind_to_round(self, round_: int) -> int:
        """Drop round records after ``round_`` (rounds a resume will run again); returns how many."""
        dropped = 0
        self._fh.close()
        try:
            while True:
                keep_end, count, n_file = 0, 0, 0
                for record, end in iter_records(self.path):
                    n_file += 1
                    if count == n_file - 1 and record.get("round", 0) <= round_:
                        keep_end, count = end, n_file
                dropped += n_file - count
                older = rotated(self.path, 1)
                if count == 0 and older.exists():
                    # Every record of the live file is newer: drop it, continue in the newest rotated file.
                    self.path.unlink()
                    self._unrotate()
                    continue
                if n_file - count:
                    self._truncate(self.path, keep_end)
                break
        finally:
            self._fh = open(self.path, "ab")  # noqa: SIM115
        self.recent.clear()
        self._size = self._load()
        return dropped

    def _unrotate(self) -> None:
        """``.1`` becomes the live file, ``.2`` becomes ``.1``, ..."""
        files = segments(self.path)[:-1]  # oldest first: .N ... .1
        os.replace(rotated(self.path, 1), self.path)
        for i in range(2, len(files) + 1):
            os.replace(rotated(self.path, i), rotated(self.path, i - 1))

    def read_all(self) -> list[dict[str, Any]]:
        """Every record on disk (rotated files included), oldest first (also after ``close``)."""
        return read_journal(self.path)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read_all())

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in segments(self.path) if p.exists())

    def close(self) -> None:
        self._fh.close()
