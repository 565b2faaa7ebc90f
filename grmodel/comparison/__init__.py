"""Comparing models on one test split: the plan of (row, seed) runs with their configs (plan.py),
scoring the trained runs and writing the report (results.py, report.py) and figures (figures.py).
Used by the pipeline's evaluation stage and by the paper's experiments."""
