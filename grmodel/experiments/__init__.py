"""The paper's experiments on our data: ``grmodel experiment table1 | table3 | table4``.

``specs`` says what each experiment trains (and imports no torch, for the command line),
``runner.run_experiment`` trains, evaluates and records it, ``report`` writes ``report.md`` and
``report.json``, and ``figures`` draws the PNG figures.
"""
