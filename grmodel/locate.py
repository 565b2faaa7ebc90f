"""The dataset or model a person points a command at: the folder itself, or a pipeline artifact
folder holding it (a KFP artifact folder, a run folder, a train output with its model
in ``seed<k>/``), so a path copied from the Kubeflow UI or ``runs/main/kfp/...`` works too."""

from __future__ import annotations

from pathlib import Path

MANIFEST_FILE = "manifest.json"
DEPTH = 3  # how far below the given folder to look


def dataset_dir(path: str | Path) -> Path:
    """The processed dataset (a folder with ``manifest.json``) at or inside ``path``."""
    return _find(Path(path), (MANIFEST_FILE,), "processed dataset", "runs/main/latest/processed")


def model_dir(path: str | Path) -> Path:
    """The model checkpoint (a folder with ``checkpoint.json`` and its weights) at or inside
    ``path``."""
    # lazy: checkpoint imports torch, which dataset_dir's callers (grmodel validate) never need
    from grmodel.checkpoint import META_FILE, WEIGHTS_FILE

    root = Path(path)
    if (root / META_FILE).is_file():
        return root  # a checkpoint folder: the reader names the file it lacks (say, model.pt)
    return _find(root, (WEIGHTS_FILE, META_FILE), "model", "runs/main/latest/models/gr")


def _find(root: Path, markers: tuple[str, ...], what: str, example: str) -> Path:
    """The one folder at or below ``root`` holding any of ``markers``."""
    if any((root / marker).is_file() for marker in markers) or not root.is_dir():
        return root  # the reader names what is missing when the path is wrong
    found = sorted({p.parent for marker in markers for depth in range(1, DEPTH + 1)
                    for p in root.glob("/".join(["*"] * depth + [marker]))})
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(str(p) for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise FileNotFoundError(f"{root}: holds {len(found)} {what}s ({listed}); name one of them")
    raise FileNotFoundError(f"{root}: no {what} here or below (rule: a {what} folder holds"
                            f" {' or '.join(markers)};"
                            f" after `make main` one is {example})")
