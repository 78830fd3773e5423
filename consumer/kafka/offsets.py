"""Offset bookkeeping: what may be committed, per partition (invariant 2).

Records finish out of order (sends run concurrently), but Kafka only remembers one position per
partition, so the committable offset is the highest *contiguous* finished offset + 1. Contiguity is
over the offsets actually consumed, not over integers: compaction and transaction markers leave gaps
that will never be consumed and must not hold the partition back.

Cost per record is amortised O(1): a deque of consumed offsets in order plus a set of the unfinished
ones; the deque's head is popped while it is finished. Not thread-safe: one owner (the run loop).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    consumed: deque[int] = field(default_factory=deque)  # tracked offsets not yet passed by `position`
    unfinished: set[int] = field(default_factory=set)
    last_tracked: int = -1
    position: int | None = None  # next offset to consume after everything finished so far
    committed: int | None = None


class OffsetTracker:
    """Track consumed and finished offsets; tell which offsets are safe to commit."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._pending = 0

    def track(self, tp: TopicPartition, offset: int) -> None:
        """Record that `offset` was consumed; offsets must increase per partition."""
        part = self._partitions.get(tp)
        if part is None:
            part = self._partitions[tp] = _Partition()
        if offset <= part.last_tracked:
            raise ValueError(
                f"offset {offset} of {tp[0]}[{tp[1]}] tracked after {part.last_tracked}:"
                " offsets must increase; revoke() the partition before consuming it again from earlier"
            )
        part.last_tracked = offset
        part.consumed.append(offset)
        part.unfinished.add(offset)
        self._pending += 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """Record that `offset`'s outcome is final. Finishing on a revoked partition is ignored."""
        part = self._partitions.get(tp)
        if part is None:
            # The partition was revoked while this record was in flight; its new owner re-consumes it.
            return
        try:
            part.unfinished.remove(offset)
        except KeyError:
            raise ValueError(
                f"offset {offset} of {tp[0]}[{tp[1]}] finished but not tracked, or finished twice"
            ) from None
        self._pending -= 1
        consumed, unfinished = part.consumed, part.unfinished
        while consumed and consumed[0] not in unfinished:
            part.position = consumed.popleft() + 1

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition: the offset to commit (next to consume), where it moved since the last commit."""
        return {
            tp: part.position
            for tp, part in self._partitions.items()
            if part.position is not None and (part.committed is None or part.position > part.committed)
        }

    def mark_committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record a successful commit; offsets of revoked partitions are ignored."""
        for tp, offset in offsets.items():
            part = self._partitions.get(tp)
            if part is not None and (part.committed is None or offset > part.committed):
                part.committed = offset

    def committed(self, tp: TopicPartition) -> int | None:
        """The last offset committed for `tp` (None before the first commit or when not tracked)."""
        part = self._partitions.get(tp)
        return None if part is None else part.committed

    def pending(self, tp: TopicPartition | None = None) -> int:
        """Records tracked but not finished: in one partition, or in all when `tp` is None."""
        if tp is None:
            return self._pending
        part = self._partitions.get(tp)
        return 0 if part is None else len(part.unfinished)

    def revoke(self, tp: TopicPartition) -> None:
        """Forget a partition (after its final commit); late finishes for it are then ignored."""
        part = self._partitions.pop(tp, None)
        if part is not None:
            self._pending -= len(part.unfinished)

    def partitions(self) -> list[TopicPartition]:
        """Partitions currently tracked."""
        return list(self._partitions)
