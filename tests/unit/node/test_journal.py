"""Journal records carry a CRC; torn or corrupt tails are detected and cut, never followed by good records."""

from __future__ import annotations

from pathlib import Path

from swarmrl.node.journal import HEADER, Journal, encode_record, read_journal, scan


def _write(path: Path, n: int) -> None:
    j = Journal(path)
    for i in range(1, n + 1):
        j.append({"kind": "round", "round": i, "reward_mean": i / 10})
    j.close()


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    _write(p, 5)
    assert [r["round"] for r in read_journal(p)] == [1, 2, 3, 4, 5]


def test_flipped_byte_is_detected_and_reading_stops(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    _write(p, 5)
    data = bytearray(p.read_bytes())
    rec_len = len(encode_record({"kind": "round", "round": 1, "reward_mean": 0.1}))
    data[2 * rec_len + HEADER.size + 3] ^= 0xFF  # inside the third record's payload
    p.write_bytes(bytes(data))
    res = scan(p)
    assert [r["round"] for r in res.records] == [1, 2]
    assert res.torn


def test_torn_tail_is_cut_before_appending(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    _write(p, 3)
    with open(p, "ab") as fh:
        fh.write(encode_record({"round": 4})[:-3])  # a crash mid-write
    j = Journal(p)
    assert [r["round"] for r in j.recent] == [1, 2, 3]
    j.append({"kind": "round", "round": 4})
    j.close()
    res = scan(p)
    assert not res.torn and [r["round"] for r in res.records] == [1, 2, 3, 4]


def test_rewind_to_checkpoint_round(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    _write(p, 6)
    j = Journal(p)
    assert j.rewind_to_round(4) == 2
    j.append({"kind": "round", "round": 5, "reward_mean": 9.0})
    j.close()
    recs = read_journal(p)
    assert [r["round"] for r in recs] == [1, 2, 3, 4, 5] and recs[-1]["reward_mean"] == 9.0


def test_garbage_file_reads_as_empty(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    p.write_bytes(b"\xff" * 100)
    assert read_journal(p) == []


def _rec(i: int) -> dict[str, object]:
    return {"kind": "round", "round": i, "text": "x" * 200}


def test_memory_holds_only_recent_records(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    j = Journal(p, recent=4)
    for i in range(1, 11):
        j.append(_rec(i))
    assert [r["round"] for r in j.recent] == [7, 8, 9, 10]
    assert [r["round"] for r in j.read_all()] == list(range(1, 11))
    j.close()
    assert [r["round"] for r in Journal(p, recent=3).recent] == [8, 9, 10]


def test_rotation_caps_disk_and_readers_see_every_kept_file(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    size = len(encode_record(_rec(1)))
    j = Journal(p, max_bytes=3 * size, keep=2)
    for i in range(1, 21):
        j.append(_rec(i))
    j.close()
    files = sorted(x.name for x in tmp_path.iterdir())
    assert files == ["journal.log", "journal.log.1", "journal.log.2"]
    assert j.disk_bytes() <= 3 * 3 * size
    # 20 records, 3 per file: files hold 13-15, 16-18 and the live 19-20; older files were deleted
    assert [r["round"] for r in read_journal(p)] == list(range(13, 21))


def test_rewind_crosses_rotated_files(tmp_path: Path) -> None:
    p = tmp_path / "journal.log"
    size = len(encode_record(_rec(1)))
    j = Journal(p, max_bytes=3 * size, keep=5)
    for i in range(1, 11):
        j.append(_rec(i))
    j.close()
    assert [r["round"] for r in read_journal(p)] == list(range(1, 11))
    j = Journal(p, max_bytes=3 * size, keep=5)
    assert j.rewind_to_round(4) == 6  # live file (10) and .1 (7-9) dropped, .2 (4-6) cut after 4
    assert [r["round"] for r in j.recent] == [1, 2, 3, 4]
    j.append(_rec(5))
    j.close()
    assert [r["round"] for r in read_journal(p)] == [1, 2, 3, 4, 5]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["journal.log", "journal.log.1"]
