"""The Kubeflow pipeline's logic: stages on directories, tracking and registration, its
parameters, the local runner and the client for a Kubeflow cluster.

``components/`` wraps each stage as a KFP component and ``pipelines/`` wires them into the DAG;
everything they do is here, so every stage can be called and tested as a plain function.
"""
