"""KuaiRec 2.0: the raw files' schema (schema.py), the ingest into a processed dataset
(ingest.py) and a generator of KuaiRec-shaped data with a known oracle (synth/)."""
