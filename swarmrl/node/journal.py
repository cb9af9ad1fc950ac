"""The round journal: append-only, length-prefixed msgpack records, each with a CRC32.

Record layout: ``<u32 little-endian payload length><u32 CRC32 of payload><msgpack payload>``. A reader stops
at the first truncated or corrupt record (a crash can leave a torn tail); ``Journal.open`` cuts such a tail
off before appending, so the file never holds a corrupt record followed by good ones.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from swarmrl.errors import JournalError

log = logging.getLogger(__name__)
HEADER = struct.Struct("<II")
MAX_RECORD = 64 * 1024 * 1024


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


def scan(path: Path) -> ScanResult:
    """Read every good record; stop at the first truncated or corrupt one."""
    data = path.read_bytes() if path.exists() else b""
    records: list[dict[str, Any]] = []
    offsets: list[int] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        start, end = pos + HEADER.size, pos + HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            record = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.UnpackException):
            break
        if not isinstance(record, dict):
            break
        records.append(record)
        offsets.append(end)
        pos = end
    return ScanResult(records, offsets, pos, len(data))


def read_journal(path: Path) -> list[dict[str, Any]]:
    return scan(path).records


class Journal:
    """Appends records durably (flush + fsync per record)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        result = scan(path)
        if result.torn:
            log.warning(
                "journal %s: cutting a torn tail of %d bytes after %d good records",
                path,
                result.file_bytes - result.valid_bytes,
                len(result.records),
            )
            self._truncate(result.valid_bytes)
        self.records = result.records
        self._offsets = result.offsets
        self._fh = open(path, "ab")  # noqa: SIM115 - held open for the node's lifetime

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as fh:
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
        self.records.append(record)
        self._offsets.append((self._offsets[-1] if self._offsets else 0) + len(blob))

    def rewind_to_round(self, round_: int) -> int:
        """Drop round records after ``round_`` (rounds a resume will run again); returns how many."""
        keep = len(self.records)
        while keep and self.records[keep - 1].get("round", 0) > round_:
            keep -= 1
        dropped = len(self.records) - keep
        if dropped:
            self._fh.close()
            self._truncate(self._offsets[keep - 1] if keep else 0)
            self.records = self.records[:keep]
            self._offsets = self._offsets[:keep]
            self._fh = open(self.path, "ab")  # noqa: SIM115
        return dropped

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def close(self) -> None:
        self._fh.close()
