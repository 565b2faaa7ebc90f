"""The paper's published numbers (arXiv 2412.20211), shown beside ours in every report and
always labelled as the paper's: they were measured on the paper's data, not on this run's."""

from __future__ import annotations

from typing import Any

# The paper's numbers (its Tables 1, 3 and 4): MAE / XAUC on KuaiRec. Our rows map onto
# the paper's methods by name; CWM has no model in the zoo.
PAPER_ANCHORS: dict[str, dict[str, Any]] = {
    "table1": {
        "caption": "the paper's Table 1, KuaiRec",
        "columns": ["watch time", "watch ratio"],
        "rows": {
            "vr": ("VR", [(7.634, 0.534), (0.385, 0.691)]),
            "wlr": ("WLR", [(6.047, 0.545), (0.375, 0.698)]),
            "d2q": ("D2Q", [(5.426, 0.565), (0.371, 0.712)]),
            "cwm": ("CWM", [(3.452, 0.580), (0.368, 0.725)]),
            "tpm": ("TPM", [(3.456, 0.571), (0.361, 0.734)]),
            "cread": ("CREAD", [(3.307, 0.594), (0.369, 0.738)]),
            "gr": ("GR", [(3.196, 0.614), (0.333, 0.753)]),
        },
    },
    "table3": {
        "caption": "the paper's Table 3, KuaiRec watch time",
        "columns": ["watch time"],
        "rows": {
            "manual": ("manual", [(3.281, 0.604)]),
            "binary": ("binary", [(3.268, 0.605)]),
            "dynamic_quantile": ("dynamic quantile", [(3.196, 0.614)]),
        },
    },
    "table4": {
        "caption": "the paper's Table 4, KuaiRec watch time",
        "columns": ["watch time"],
        "rows": {
            "full": ("GR (full CLEM)", [(3.196, 0.614)]),
            "no_clem": ("w/o CLEM", [(3.416, 0.584)]),
            "em_teacher_forcing": ("EM with teacher forcing", [(3.241, 0.604)]),
            "cl_without_em": ("CL w/o EM", [(3.359, 0.588)]),
            "linear": ("linear decay", [(3.205, 0.613)]),
            "exponential": ("exponential decay", [(3.211, 0.613)]),
            "fixed_p_0.5": ("p = 0.5", [(3.208, 0.612)]),
            "fixed_p_0": ("p = 0", [(3.283, 0.593)]),
        },
    },
}
