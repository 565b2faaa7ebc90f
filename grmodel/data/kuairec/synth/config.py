"""The generator's sizes and the parameters of its planted process, and the named presets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from grmodel.data.io import DataSpecError


@dataclass
class SynthConfig:
    """Every size and every parameter of the planted process; ``synth.json`` records it."""

    preset_name: str = "default"
    seed: int = 2024
    # Directory with the real user_features.csv / item_categories.csv to use instead of
    # generated ones (their first n_users users and n_items videos are used).
    side_dir: str | None = None
    # Sizes.
    n_users: int = 800
    n_items: int = 1500
    big_rows: int = 120_000  # including the exact duplicate rows
    min_user_rows: int = 100  # big-matrix rows per user, before duplicates
    user_rows_log_sd: float = 0.7
    small_users: int = 150
    small_items: int = 200
    small_density: float = 0.996
    duplicate_share: float = 0.0773  # big matrix: 968k exact duplicates of 12.53M rows
    small_nan_time_share: float = 0.039  # small matrix: 182k of 4.68M rows lack a time
    n_tags: int = 31
    first_day: str = "2020-07-05"
    last_day: str = "2020-09-05"
    # Videos.
    duration_median_ms: float = 9636.0
    duration_log_sd: float = 0.9
    min_duration_ms: int = 140
    max_duration_ms: int = 315_072
    popularity_log_sd: float = 1.2
    # Planted label process (calibrated to the big-matrix marginals of docs/kuairec.md).
    base_log_ratio: float = 0.02
    weibull_shape: float = 2.74
    user_bias_sd: float = 0.24
    profile_effect_sd: float = 0.12
    item_bias_sd: float = 0.24
    tag_effect_sd: float = 0.14
    taste_weight: float = 0.29
    taste_profile_share: float = 0.5
    duration_weight: float = -0.2
    user_activity_weight: float = 0.08
    item_popularity_weight: float = 0.08
    zero_logit: float = -4.6
    zero_taste_weight: float = -0.8
    zero_activity_weight: float = -0.3
    skip_share: float = 0.159
    skip_scale: float = 0.036
    tail_share: float = 0.0124
    tail_start: float = 3.52
    tail_alpha: float = 1.91
    tail_max: float = 60.0  # the Pareto factor's upper bound (KuaiRec's max ratio is 573)
    # Rows per CSV write batch (bounds memory at the full size).
    chunk_rows: int = 1_000_000

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SynthConfig:
        """A named size (``tiny``, ``default``, ``full``) with field overrides."""
        if name not in PRESETS:
            raise DataSpecError(f"unknown synth preset {name!r}; expected one of {list(PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise DataSpecError(f"unknown SynthConfig field(s) {unknown}")
        config = cls(preset_name=name, **{**PRESETS[name], **overrides})
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, rule: str) -> None:
            if not ok:
                raise DataSpecError(f"SynthConfig: {rule}")

        need(self.n_users >= 2 and self.n_items >= 2, "n_users and n_items >= 2")
        need(0 < self.small_users <= self.n_users, "0 < small_users <= n_users")
        need(0 < self.small_items <= self.n_items, "0 < small_items <= n_items")
        need(0 < self.small_density <= 1, "0 < small_density <= 1")
        need(0 <= self.duplicate_share < 0.5, "0 <= duplicate_share < 0.5")
        need(0 <= self.small_nan_time_share < 1, "0 <= small_nan_time_share < 1")
        need(self.min_user_rows >= 1, "min_user_rows >= 1")
        base_rows = self.big_rows - round(self.big_rows * self.duplicate_share)
        need(
            base_rows >= self.n_users * self.min_user_rows,
            f"big_rows without duplicates ({base_rows}) >= n_users * min_user_rows"
            f" ({self.n_users * self.min_user_rows})",
        )
        need(self.n_tags >= 4, "n_tags >= 4")
        need(self.weibull_shape > 0, "weibull_shape > 0")
        need(0 <= self.skip_share < 1 and 0 < self.skip_scale <= 1,
             "0 <= skip_share < 1 and 0 < skip_scale <= 1")
        need(0 <= self.tail_share < 1 and self.tail_start > 0, "0 <= tail_share < 1, tail_start > 0")
        need(self.tail_alpha > 1 and self.tail_max > 1, "tail_alpha > 1 and tail_max > 1")
        need(self.chunk_rows >= 1000, "chunk_rows >= 1000")
        try:
            first, last = dt.date.fromisoformat(self.first_day), dt.date.fromisoformat(self.last_day)
        except ValueError as exc:
            raise DataSpecError(f"SynthConfig: first_day/last_day: {exc}") from None
        need(first <= last, "first_day <= last_day")


PRESETS: dict[str, dict[str, Any]] = {
    # About 10k rows for tests; users get >= 40 rows here, not KuaiRec's 100.
    "tiny": dict(n_users=50, n_items=200, big_rows=8_000, min_user_rows=40,
                 small_users=20, small_items=100, chunk_rows=4_000),
    # The main job: sized so that ingest plus training three models fits in minutes on 2 cores.
    "default": dict(),
    # KuaiRec 2.0 sizes (docs/kuairec.md).
    "full": dict(n_users=7_176, n_items=10_728, big_rows=12_530_806, small_users=1_411,
                 small_items=3_327, user_rows_log_sd=0.75),
}
