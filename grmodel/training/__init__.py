"""One trainer for every model: its entry points (loop.py), the epoch loop (epochs.py), its
batch sources (batches.py), the resumable state (state.py) and what a finished run records
(records.py)."""
