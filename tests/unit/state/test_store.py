"""The state store's own rules: key ranges per slot, wipes, counts, checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from consumer.state.store import WIPE_BATCH, LedgerStore
from tests.fakes import store


def test_wiping_a_slot_forgets_it_all_in_bounded_batches_and_leaves_the_others() -> None:
    s = store()
    for n in range(WIPE_BATCH + 5):
        s.put(0, f"k{n}", (1e10, 0.0, f"SM{n}"))
    s.put(1, "other", (1e10, 5.0, "SMother"))
    s.set_checkpoint(0, 99)
    s.wipe(0)
    assert len(s) == 1
    assert s.get(0, "k0") is None
    assert not s.has_sid("SM0")
    assert s.checkpoint(0) is None
    assert s.get(1, "other") == (1e10, 5.0, "SMother")
    assert s.intents(1) == {"other"}


def test_the_last_slot_number_is_a_key_range_like_any_other() -> None:
    s = store()
    for slot in (0xFE, 0xFF, 0x100):
        s.put(slot, "k", (1e10, 1.0, ""))
    assert [s.intents(slot) for slot in (0xFE, 0xFF, 0x100)] == [{"k"}, {"k"}, {"k"}]
    s.wipe(0xFF)
    assert s.get(0xFE, "k") is not None
    assert s.get(0xFF, "k") is None
    assert s.get(0x100, "k") is not None


def test_counts_stop_at_the_limit_and_only_count_after_since() -> None:
    s = store()
    for at in (10.0, 20.0, 30.0):
        s.add_count("cap", at, f"k{at}", keep_until=1e10)
    assert s.count_since("cap", 10.0, limit=10) == 2, "a send exactly at the window's start has left it"
    assert s.count_since("cap", 0.0, limit=2) == 2
    assert s.count_since("cap-other", 0.0, limit=10) == 0


def test_the_entry_count_and_checkpoints_survive_a_reopen(tmp_path: Path) -> None:
    first = LedgerStore(tmp_path / "s")
    first.put(3, "a", (1e10, 0.0, ""))
    first.put(3, "b", (1e10, 0.0, ""))
    first.put(3, "a", None)
    first.set_checkpoint(3, 42)
    first.close()
    first.close()  # closing twice is harmless
    again = LedgerStore(tmp_path / "s")
    try:
        assert len(again) == 1
        assert again.checkpoint(3) == 42
        assert again.checkpoint(4) is None
    finally:
        again.close()


def test_a_temporary_store_is_removed_when_closed() -> None:
    s = LedgerStore(None)
    path = s.path
    assert path.is_dir()
    s.close()
    assert not path.exists()


CRASHING_WRITER = """
import os, sys
from pathlib import Path
from consumer.state.store import LedgerStore

s = LedgerStore(Path(sys.argv[1]))
for n in range(1000):
    s.put(0, f"k{n}", (1e10, 0.0, ""))
    if n % 100 == 99:
        s.set_checkpoint(0, n + 1)
os._exit(0)  # killed: no close, no flush
"""


def test_a_killed_writer_leaves_its_writes_and_its_checkpoint_for_the_restart(tmp_path: Path) -> None:
    """The write-ahead log replays what the killed process had written: the restart reads only the
    changelog past the last checkpoint, and every entry the checkpoint covers is there."""
    path = tmp_path / "state"
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], check=True, timeout=60)
    again = LedgerStore(path)
    try:
        assert again.checkpoint(0) == 1000
        assert all(again.get(0, f"k{n}") is not None for n in range(1000))
        assert len(again) == 1000
    finally:
        again.close()
