"""Kubernetes: the pods grmodel starts beside a pipeline step, and what they run.

* ``images``: the container images' names (the one place that names them).
* ``pods``: what every pod grmodel creates carries (a non-root user, a read-only root
  filesystem, its environment and labels), names Kubernetes accepts, the namespace.
* ``claim``: the shared ReadWriteMany claim (where it is mounted here and in the pods, and the
  copy of a step's inputs onto it).
* ``custom_objects``: create a custom resource that runs to an end, and wait for it.
* ``pytorchjob``: multi-replica training as a Kubeflow PyTorchJob.
* ``sparkapplication``: a data stage as a Spark Operator SparkApplication.

The pipeline uses them in ``grmodel/pipeline/stages/train.py`` (GR as a PyTorchJob) and
``grmodel/pipeline/spark_stages.py`` (the data stages as SparkApplications, whose driver runs
``grmodel/pipeline/spark_driver.py``).
"""
