"""The paper's experiments on our data: ``grmodel experiment table1 | table3 | table4``.

``specs`` says what each experiment trains, ``runner.run_experiment`` trains the runs and hands
them to the library's comparison report (grmodel/comparison), and ``anchors`` holds the paper's
numbers printed beside ours. Nothing outside the command line imports this package.
"""
