"""A partition's share of a campaign's throttle and limits.

The engine decides each events partition on its own and counts its sends per partition.
Were every partition to apply a campaign's whole throttle or limit, N partitions could
send N times as much. So each partition applies a share instead: the limit divided by
the number of partitions, rounded down, with the units left over given one each to some
of the partitions. The shares add up to the limit, so the campaign never exceeds it. It
may stop short of the limit when its users are spread unevenly over the partitions.

Which partitions get the left-over units turns with the period (the 5-minute bucket of a
throttle, the day of a daily limit), so that a throttle smaller than the number of
partitions still lets every partition send in turn.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WHOLE", "Share"]


@dataclass(frozen=True, slots=True)
class Share:
    """Partition `index` of `count`; the default is the whole of every limit."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"invalid partition {self.index}: expected 0 to {self.count - 1} for "
                f"{self.count} partitions"
            )

    def of(self, total: int, turn: int = 0) -> int:
        """Return this partition's part of `total` in the period numbered `turn`."""
        if self.count == 1:
            return total
        base, left_over = divmod(total, self.count)
        return base + ((self.index - turn) % self.count < left_over)


WHOLE = Share()
