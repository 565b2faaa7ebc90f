#!/usr/bin/env bash
# Build, and with --push publish, the pipeline's images: docker/Dockerfile (runtime),
# docker/Dockerfile.gpu (training) and docker/Dockerfile.spark (runtime + Java + pyspark, built
# from the runtime image). Their names come from grmodel.k8s.images, the one place the
# components read them from, so a pipeline compiled from this checkout runs these images.
#
#   docker/build.sh [--registry REGISTRY] [--push] [--only runtime|gpu|spark] [--engine docker|podman]
#                   [--dry-run] [-- EXTRA BUILD ARGS...]
#
# REGISTRY defaults to $GRMODEL_IMAGE_REGISTRY, else grmodel.k8s.images.DEFAULT_REGISTRY;
# compile the pipeline with the same GRMODEL_IMAGE_REGISTRY. The engine is $ENGINE, else docker
# when its daemon answers, else podman. --dry-run prints the commands instead of running them.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

cd "$(dirname "$0")/.."
registry="${GRMODEL_IMAGE_REGISTRY:-}"
push=0
only=""
engine="${ENGINE:-}"
dry_run=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --registry) registry="${2:?--registry needs a value}"; shift 2 ;;
        --push) push=1; shift ;;
        --only) only="${2:?--only needs runtime, gpu or spark}"; shift 2 ;;
        --engine) engine="${2:?--engine needs docker or podman}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
done
case "$only" in ""|runtime|gpu|spark) ;; *) echo "--only takes runtime, gpu or spark, not $only" >&2; exit 2 ;; esac

python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi

if [ -z "$engine" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        engine=docker
    elif command -v podman >/dev/null 2>&1; then
        engine=podman
    elif [ "$dry_run" = 1 ]; then
        engine=docker
    else
        echo "no container engine: install docker (with a running daemon) or podman" >&2
        exit 1
    fi
fi

export GRMODEL_IMAGE_REGISTRY="$registry"
runtime_image="$("$python" -m grmodel.k8s.images runtime)"
gpu_image="$("$python" -m grmodel.k8s.images gpu)"
spark_image="$("$python" -m grmodel.k8s.images spark)"
version="$("$python" -m grmodel.k8s.images version)"
# The tag is the installed package's version: refuse a stale install of an edited pyproject.toml.
declared="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
if [ "$version" != "$declared" ]; then
    echo "installed grmodel is $version but pyproject.toml says $declared: reinstall (make test does)" >&2
    exit 1
fi
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# An image built from a tree with uncommitted changes says so, as runs outside images do.
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi

run() {
    if [ "$dry_run" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

build() {  # build DOCKERFILE IMAGE [BUILD ARGS...]
    file="$1"; image="$2"; shift 2
    run "$engine" build --platform linux/amd64 --file "$file" --tag "$image" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "$@" \
        ${extra[@]+"${extra[@]}"} .
}

images=()
if [ "$only" = "" ] || [ "$only" = runtime ]; then
    build docker/Dockerfile "$runtime_image"; images+=("$runtime_image")
fi
if [ "$only" = "" ] || [ "$only" = gpu ]; then
    build docker/Dockerfile.gpu "$gpu_image"; images+=("$gpu_image")
fi
# The Spark image starts from the runtime image of the same version (build that one first).
if [ "$only" = "" ] || [ "$only" = spark ]; then
    build docker/Dockerfile.spark "$spark_image" --build-arg "RUNTIME_IMAGE=$runtime_image"
    images+=("$spark_image")
fi
if [ "$push" = 1 ]; then
    for image in "${images[@]}"; do run "$engine" push "$image"; done
fi
if [ "$dry_run" = 0 ]; then
    verb=built; [ "$push" = 1 ] && verb=pushed
    for image in "${images[@]}"; do echo "$verb $image"; done
fi
