"""Reports for people: the pages a run leaves behind (the pipeline and the experiment harness
both use this package; it imports neither)."""
