"""Generated datasets with a known oracle, one module per generator family.

Each family draws labels from a planted law whose conditional median given the features the
models see is known (``oracle_median``: the MAE floor). The KuaiRec-shaped default generator
lives in ``grmodel/data/kuairec/synth/``; the families here give other label shapes for the
robustness suite (docs/robustness.md):

* ``customer_value``: zero-inflated dollars with cents (a tabular spec source);
* ``rewatch``: KuaiRec-format raw files from a skip / lognormal body / re-watch process;
* ``session_ms``: durations in milliseconds, 1e3 to 1e7 (a tabular spec source);
* ``completion``: completion fractions in [0, 1] with masses at 0 and 1 (a tabular spec source);
* ``drifting_zeros``: zero-inflated, weak-signal durations whose law drifts through the year,
  split forward in time (a tabular spec source).
"""
