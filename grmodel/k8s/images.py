"""The container images of the pipeline's stages: the one place that names them.

Three images share the ``grmodel`` wheel and its locked dependencies (docker/): the runtime
image for every light stage, the CUDA image for training, and the Spark image (the runtime
image plus Java and pyspark) for SparkApplications. Tags follow the package version, so a
pipeline compiled from version X runs the code of version X. The registry comes from
``GRMODEL_IMAGE_REGISTRY`` when set (components read it when the pipeline is compiled), else
:data:`DEFAULT_REGISTRY`.
"""

from __future__ import annotations

import os
import sys

from grmodel import __version__

DEFAULT_REGISTRY = "ghcr.io/grmodel"
REGISTRY_ENV = "GRMODEL_IMAGE_REGISTRY"
RUNTIME_NAME = "grmodel"
GPU_NAME = "grmodel-gpu"
SPARK_NAME = "grmodel-spark"


def registry() -> str:
    return os.environ.get(REGISTRY_ENV, "").strip().rstrip("/") or DEFAULT_REGISTRY


def image_tag() -> str:
    """The tag every image carries: the package version (``+local`` parts are not valid in tags)."""
    return __version__.replace("+", "-")


def runtime_image() -> str:
    """The slim CPU image of the light stages (docker/Dockerfile)."""
    return f"{registry()}/{RUNTIME_NAME}:{image_tag()}"


def gpu_image() -> str:
    """The CUDA image of the training stage (docker/Dockerfile.gpu)."""
    return f"{registry()}/{GPU_NAME}:{image_tag()}"


def spark_image() -> str:
    """The runtime image plus Java 17 and pyspark: SparkApplication drivers and executors
    (docker/Dockerfile.spark)."""
    return f"{registry()}/{SPARK_NAME}:{image_tag()}"


def main(argv: list[str] | None = None) -> int:
    """``python -m grmodel.k8s.images [runtime|gpu|spark|tag|version|registry]``: print what
    docker/build.sh builds, so the build and the components name the same images. No argument
    prints every image."""

    args = sys.argv[1:] if argv is None else argv
    values = {"runtime": runtime_image, "gpu": gpu_image, "spark": spark_image, "tag": image_tag,
              "version": lambda: __version__, "registry": registry}
    if not args:
        print(f"runtime {runtime_image()}\ngpu {gpu_image()}\nspark {spark_image()}")
        return 0
    if len(args) != 1 or args[0] not in values:
        print(f"usage: python -m grmodel.k8s.images [{'|'.join(values)}]", file=sys.stderr)
        return 2
    print(values[args[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
