"""One trainer for every model: the loop (loop.py), its batch sources (batches.py), the
resumable state (state.py) and what a finished run records (records.py)."""
