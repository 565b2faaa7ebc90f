"""Kubeflow pipelines of grmodel: the DAG definitions and their compiled YAML."""
