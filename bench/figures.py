"""One figure of the benchmark suite: repeated runs, a ceiling, a target.

Every benchmark reports `Figure`s; `bench/run.py` collects them into
`bench/results.json` and the table in `docs/performance.md`. A figure is judged by
its ratio to a ceiling measured in the same run when it has one (so a noisy machine
moves both), otherwise by its own value.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class Figure:
    name: str  # stable id, e.g. "ingest.counter.sqlite.w1"
    title: str  # what a reader sees in the table
    unit: str  # "req/s", "ms", "rows/s", "MB", "x"
    runs: list[float]  # one value per run (at least 3 in a full run)
    # The target: "higher" means value (or ratio) >= target is good, "lower" <= target.
    better: Literal["higher", "lower"] = "higher"
    target: float | None = None
    ceiling: float | None = None  # median of the ceiling measured in the same run
    ceiling_name: str | None = None
    judged: Literal["value", "ratio"] = "value"
    detail: dict[str, Any] = field(default_factory=dict)  # p95/p99, sizes, notes

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def ratio(self) -> float | None:
        return self.median / self.ceiling if self.ceiling else None

    @property
    def judged_value(self) -> float:
        if self.judged == "ratio":
            if self.ratio is None:
                raise ValueError(f"{self.name}: judged by ratio but has no ceiling")
            return self.ratio
        return self.median

    def meets(self, fraction: float = 1.0) -> bool | None:
        """Whether the figure reaches its target; `fraction=0.5` is the regression
        guard: at least half the target (or at most twice it, for "lower")."""
        if self.target is None:
            return None
        if self.better == "higher":
            return self.judged_value >= self.target * fraction
        return self.judged_value <= self.target / fraction

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            median=self.median,
            min=min(self.runs),
            max=max(self.runs),
            ratio=self.ratio,
            meets_target=self.meets(),
        )
        return out
