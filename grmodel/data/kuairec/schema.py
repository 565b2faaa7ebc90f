"""The KuaiRec 2.0 raw files: their names, columns and rules, in one place.

The ingest (ingest.py), the generator (synth/), the raw validation suites
(grmodel/validation/raw.py) and the data versioning (grmodel/versioning.py) all read them
from here; docs/kuairec.md describes the files and the figures quoted below.
"""

from __future__ import annotations

from typing import Any, Literal

ColumnKind = Literal["int", "float", "str"]

# Files: the two interaction matrices and the side files every ingest needs.
BIG, SMALL = "big_matrix.csv", "small_matrix.csv"
USER_FILE, ITEM_FILE = "user_features.csv", "item_categories.csv"
INTERACTION_FILES = (BIG, SMALL)
RAW_FILES = (*INTERACTION_FILES, ITEM_FILE, USER_FILE)
# Optional files: the real dataset's daily item counters; the generator's oracle and record.
DAILY_FILE = "item_daily_features.csv"
ORACLE_FILE, SYNTH_FILE = "oracle.csv", "synth.json"
# The generator's name in synth.json and in data.dvc's meta: a recorded identifier, kept as the
# first versions wrote it (the generator now lives in grmodel/data/kuairec/synth/).
GENERATOR = "grmodel.data.synth.generate_kuairec"

# Times: ``time`` and ``date`` are local to UTC+8 (Beijing); ``timestamp`` is Unix seconds.
UTC_PLUS_8_MS = 8 * 3600 * 1000
DAY_MS = 86_400_000

# Logs that arrive by day: one folder per local (UTC+8) day, ``date=YYYY-MM-DD/``, holding the
# day's interactions (DAY_FILE: the matrix columns) and the side files as they stood that day
# (every user and video seen so far; a day may leave them out when the log root holds them).
# Generated days add the day's ORACLE_FILE; SYNTH_FILE sits at the root. grmodel/data/windows.py
# names, lists and hashes the partitions.
DAY_FILE = "interactions.csv"

# Columns of an interaction matrix. ``date`` is read as float: rows of the small matrix lack
# their date (docs/kuairec.md). The ingest orders rows by ``timestamp`` and never reads ``date``.
INTERACTION_COLUMNS: dict[str, ColumnKind] = {
    "user_id": "int",
    "video_id": "int",
    "play_duration": "int",
    "video_duration": "int",
    "date": "float",
    "timestamp": "float",
    "watch_ratio": "float",
}
# Plausibility caps of an interaction row. Real KuaiRec (docs/kuairec.md): play_duration max
# 999,639 ms, video_duration max 315,072 ms, watch_ratio max 573.5 (big) / 571.5 (small). The
# generator's joint of ratio and duration is wider (full preset, seeds 2024 and 7: play_duration
# up to 16,823,470 ms, watch_ratio up to 815), so the caps are: one play within one day, a video
# under 10 minutes, a ratio under 2,000. A unit error or a corrupt row (plays of 1e12 ms, say)
# breaks them; the raw validation suite enforces them.
MAX_PLAY_DURATION_MS = 86_400_000
MAX_VIDEO_DURATION_MS = 600_000
MAX_WATCH_RATIO = 2_000.0
MATRIX_COLUMNS: dict[str, ColumnKind] = {k: v for k, v in INTERACTION_COLUMNS.items() if k != "date"}
ORACLE_COLUMNS: dict[str, Any] = {
    "user_id": "int", "video_id": "int", "oracle_median_ratio": "float",
    "oracle_mean_ratio": "float",
}

# user_features.csv: string-valued range fields, 0/1 flags and onehot_feat0..17, whose levels
# in the real file are ONEHOT_LEVELS.
USER_STRING_FIELDS = ("user_active_degree", "follow_user_num_range", "fans_user_num_range",
                      "friend_user_num_range", "register_days_range")
USER_FLAGS = ("is_lowactive_period", "is_live_streamer", "is_video_author")
USER_ACTIVE_DEGREES = ("full_active", "high_active", "middle_active", "UNKNOWN")
ONEHOT_LEVELS = (2, 8, 30, 1076, 12, 10, 3, 47, 340, 7, 5, 3, 2, 2, 2, 2, 2, 2)
# The GR authors' user fields, then the other profile fields of user_features.csv that the
# default ingest adds (docs/kuairec.md).
AUTHORS_USER_FIELDS = ("user_active_degree", *(f"onehot_feat{k}" for k in range(len(ONEHOT_LEVELS))))
DEFAULT_USER_FIELDS = (*AUTHORS_USER_FIELDS, *USER_FLAGS, "follow_user_num_range",
                       "fans_user_num_range", "friend_user_num_range", "register_days_range")
# Static per-video columns of item_daily_features.csv (its daily counters would leak the
# future, so none of them is used).
DEFAULT_DAILY_FIELDS = ("author_id", "video_type", "upload_type", "music_id")

# item_categories.csv: ``feat`` is a list literal of integer tag ids such as "[27, 9]" (the
# pattern also admits "[]"; how many tags a video may have is the rule below).
TAG_LIST = r"^\[\s*(?:\d+\s*(?:,\s*\d+\s*)*)?\]$"
MAX_TAGS = 4  # item_tag_0 .. item_tag_3
N_TAGS = 31  # tag ids 0 .. 30 in the real file
