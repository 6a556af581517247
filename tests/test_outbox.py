"""The SQLite outbox on its own: durability, bounds, upsert, ack, failed rows."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from vaktpost.edge.delivery.outbox import Outbox


def ids(rows) -> list[str]:
    return [r.event_id for r in rows]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "outbox.db"


def test_rows_seq_and_counters_survive_reopen(path: Path) -> None:
    ob = Outbox(path, 3, "drop_oldest")
    assert [ob.next_seq(), ob.next_seq()] == [1, 2]
    for i in range(4):  # one more than fits: one dropped
        assert ob.put(f"e{i}", "t/x", f"p{i}".encode())
    assert ob.mark_sent("e1")
    assert ob.mark_failed("e2", "refused")
    ob.close()

    ob = Outbox(path, 3, "drop_oldest")
    assert ob.next_seq() == 3
    assert ids(ob.rows()) == ["e1", "e2", "e3"]
    assert ob.get("e1").state == "sent" and ob.get("e1").attempts == 1
    assert ob.get("e2").state == "failed" and ob.get("e2").fail_reason == "refused"
    assert ob.get("e3").payload == b"p3"
    assert ob.counters() == {"depth": 2, "dropped": 1, "failed": 1, "expired": 0}
    # The file really is in WAL mode with full fsync (the durability argument in docs/delivery.md).
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_drop_oldest_deletes_oldest_unacked_and_counts(path: Path) -> None:
    ob = Outbox(path, 3, "drop_oldest")
    for i in range(3):
        ob.put(f"e{i}", "t", b"x")
    ob.mark_sent("e0")  # sent but unacknowledged is still droppable
    assert ob.put("e3", "t", b"x") is True
    assert ob.put("e4", "t", b"x") is True
    assert ids(ob.pending()) == ["e2", "e3", "e4"]
    assert ob.counters() == {"depth": 3, "dropped": 2, "failed": 0, "expired": 0}


def test_drop_newest_refuses_and_counts(path: Path) -> None:
    ob = Outbox(path, 3, "drop_newest")
    for i in range(3):
        ob.put(f"e{i}", "t", b"x")
    assert ob.put("e3", "t", b"x") is False
    assert ob.put("e4", "t", b"x") is False
    assert ids(ob.pending()) == ["e0", "e1", "e2"]
    assert ob.counters()["dropped"] == 2
    ob.ack([])  # nothing
    ob.mark_sent("e0")
    assert ob.ack(["e0"]) == 1
    assert ob.put("e5", "t", b"x") is True  # room again
    assert ids(ob.pending()) == ["e1", "e2", "e5"]


def test_failed_rows_make_room_first(path: Path) -> None:
    for policy in ("drop_oldest", "drop_newest"):
        ob = Outbox(path.with_name(f"{policy}.db"), 3, policy)
        for i in range(3):
            ob.put(f"e{i}", "t", b"x")
        ob.mark_failed("e1", "0x87")
        assert ob.put("e3", "t", b"x") is True
        assert ids(ob.rows()) == ["e0", "e2", "e3"], policy
        assert ob.counters() == {"depth": 3, "dropped": 0, "failed": 1, "expired": 0}


def test_update_of_a_stored_event_replaces_payload_and_needs_no_room(path: Path) -> None:
    ob = Outbox(path, 2, "drop_newest")
    ob.put("a", "t/cam1", b"start")
    ob.put("b", "t/cam1", b"start")
    ob.mark_sent("a")
    assert ob.put("a", "t/cam1", b"end") is True  # full, but an update is not a new event
    row = ob.get("a")
    assert (row.payload, row.state) == (b"end", "pending")
    assert ob.depth() == 2 and ob.counters()["dropped"] == 0
    # The newest state goes out, after rows that changed earlier.
    assert ids(ob.pending()) == ["b", "a"]
    assert [r.payload for r in ob.pending() if r.event_id == "a"] == [b"end"]


def test_ack_deletes_only_rows_whose_current_version_was_sent(path: Path) -> None:
    ob = Outbox(path, 10)
    ob.put("a", "t", b"v1")
    ob.put("b", "t", b"v1")
    assert ob.ack(["a"]) == 0  # never sent: an ack cannot be for this payload
    ob.mark_sent("a")
    ob.mark_sent("b")
    ob.put("b", "t", b"v2")  # changed after sending: the ack is for v1, v2 must still go
    assert ob.ack(["a", "b", "unknown"]) == 1
    assert ids(ob.rows()) == ["b"]
    ob.mark_sent("b")
    assert ob.ack(["b"]) == 1
    assert ob.depth() == 0


def test_mark_sent_of_an_older_version_leaves_the_update_pending(path: Path) -> None:
    ob = Outbox(path, 10)
    ob.put("a", "t", b"v1")
    v1 = ob.pending()[0].seq
    ob.put("a", "t", b"v2")  # arrives while v1 is being published
    assert ob.mark_sent("a", v1) is False
    assert ob.get("a").state == "pending"
    assert ob.mark_failed("a", "refused v1", v1) is False  # a refusal of v1 does not fail v2
    assert ob.get("a").state == "pending" and ob.counters()["failed"] == 0


def test_failed_rows_are_kept_counted_and_never_pending(path: Path) -> None:
    ob = Outbox(path, 10)
    ob.put("bad", "t", b"x")
    ob.put("good", "t", b"x")
    ob.mark_sent("bad")
    assert ob.mark_failed("bad", "PUBACK 0x87 Not authorized") is True
    assert ob.mark_failed("bad", "again") is False  # counted once
    assert ids(ob.pending()) == ["good"]
    assert ids(ob.pending(resend_after=0)) == ["good"]
    assert ob.reset_inflight() == 0
    assert ids(ob.pending()) == ["good"]
    assert ob.ack(["bad"]) == 0
    assert ob.mark_sent("bad") is False
    assert [(r.event_id, r.fail_reason) for r in ob.rows("failed")] == [("bad", "PUBACK 0x87 Not authorized")]
    assert ob.counters() == {"depth": 1, "dropped": 0, "failed": 1, "expired": 0}
    assert ob.purge_failed(older_than=3600) == 0
    assert ob.purge_failed(older_than=-1) == 1
    assert ob.rows("failed") == [] and ob.counters()["failed"] == 1  # the count is history


def test_pending_respects_resend_after_and_reset_inflight(path: Path) -> None:
    ob = Outbox(path, 10)
    for e in ("a", "b", "c"):
        ob.put(e, "t", b"x")
    ob.mark_sent("a")
    ob.mark_sent("b")
    assert ids(ob.pending()) == ["a", "b", "c"]  # everything unacknowledged
    assert ids(ob.pending(resend_after=3600)) == ["c"]  # sent ones not yet due
    assert ids(ob.pending(resend_after=0)) == ["a", "b", "c"]
    assert ids(ob.pending(2)) == ["a", "b"]
    assert ob.reset_inflight(exclude={"b"}) == 1
    assert ids(ob.pending(resend_after=3600)) == ["a", "c"]
    assert ob.get("b").state == "sent"


def test_resend_wait_doubles_per_attempt_up_to_the_cap(path: Path) -> None:
    ob = Outbox(path, 10)
    ob.put("a", "t", b"x")
    for _ in range(3):
        ob.mark_sent("a")
    # Third attempt: due 4 x resend_after after the last send, at most resend_max.
    stamp = ob.get("a").last_sent_at
    ob._db.execute("UPDATE outbox SET last_sent_at = ?", (stamp - 30,))
    assert ids(ob.pending(resend_after=10)) == ["a"]  # no backoff without resend_max
    assert ids(ob.pending(resend_after=10, resend_max=600)) == []  # 40 s not yet over
    assert ids(ob.pending(resend_after=10, resend_max=25)) == ["a"]  # capped at 25 s
    ob._db.execute("UPDATE outbox SET last_sent_at = ?", (stamp - 41,))
    assert ids(ob.pending(resend_after=10, resend_max=600)) == ["a"]
    ob._db.execute("UPDATE outbox SET last_sent_at = ?", (stamp + 3600,))  # clock went back
    assert ids(ob.pending(resend_after=10, resend_max=600)) == ["a"]


def test_concurrent_writers_lose_nothing(path: Path) -> None:
    ob = Outbox(path, 1000)
    seqs: list[int] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(25):
            s = ob.next_seq()
            ob.put(f"t{t}-{i}", "t", b"x")
            if i % 3 == 0:
                ob.mark_sent(f"t{t}-{i}")
            with lock:
                seqs.append(s)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(seqs) == list(range(1, 101))
    assert ob.depth() == 100


def test_corrupt_file_is_moved_aside_not_fatal(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not an sqlite database" * 100)
    ob = Outbox(path, 10)
    assert ob.put("a", "t", b"x")
    aside = list(path.parent.glob("outbox.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def test_bad_arguments_are_refused(path: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(path, 0)
    with pytest.raises(ValueError):
        Outbox(path, 10, "drop_random")  # type: ignore[arg-type]


def test_drops_count_events_not_refused_puts(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A refused event keeps coming back as update and end (and its snapshot row):
    # it is one lost event, and the log says so in a line or two, not per put.
    ob = Outbox(path, 3, "drop_newest")
    for i in range(3):
        ob.put(f"e{i}", "t", b"x")
    caplog.set_level("WARNING", logger="vaktpost.edge.delivery.outbox")
    for i in range(3, 403):
        for phase in (b"start", b"update", b"end"):
            assert ob.put(f"e{i}", "t", phase) is False
        assert ob.put(f"e{i}/snapshot", "t/s", b"jpeg") is False
    assert ob.counters()["dropped"] == 400
    assert len([r for r in caplog.records if "outbox full" in r.getMessage()]) <= 2
    ob.close()
    assert Outbox(path, 3, "drop_newest").counters()["dropped"] == 400


def test_drop_oldest_counts_an_event_and_its_snapshot_once(path: Path) -> None:
    ob = Outbox(path, 4, "drop_oldest")
    ob.put("e0", "t", b"x")
    ob.put("e0/snapshot", "t/s", b"jpeg")
    ob.put("e1", "t", b"x")
    ob.put("e1/snapshot", "t/s", b"jpeg")
    ob.put("e2", "t", b"x")  # e0 and its snapshot make room, one after the other
    ob.put("e3", "t", b"x")
    assert ids(ob.rows()) == ["e1", "e1/snapshot", "e2", "e3"]
    assert ob.counters()["dropped"] == 1


def test_drops_of_an_unwritable_file_are_saved_when_it_is_writable_again(path: Path) -> None:
    ob = Outbox(path, 10, "drop_oldest")
    ob.put("e0", "t", b"x")
    ob._db.execute("PRAGMA query_only = ON")  # every write fails as on a full disk
    assert ob.put("e1", "t", b"x") is False
    assert ob.counters()["dropped"] == 1
    ob._db.execute("PRAGMA query_only = OFF")
    assert ob.put("e2", "t", b"x") is True
    ob.close()
    assert Outbox(path, 10, "drop_oldest").counters()["dropped"] == 1
