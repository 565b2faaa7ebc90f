"""The champion's drift reference: the profile of its training rows, stored in its pyfunc model
(``data/checkpoint/drift_reference.json``, grmodel/data/profile.py) when it was logged.

Only that file is downloaded (``models:/NAME/VERSION/data/checkpoint/drift_reference.json``),
never the weights. "No reference" is an answer, not an error: there is no registered model
of that name yet (a first run), it has no champion, or the champion was logged without its
data (or before models carried a reference); the reason says which.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grmodel.data.profile import PROFILE_FILE, read_profile
from grmodel.registry.promotion import CHAMPION, SOURCE_RUN_TAG
from grmodel.registry.pyfunc import DATA_DIR
from grmodel.tracking import connect


@dataclass
class ChampionReference:
    """The champion's profile (None: there is none, and ``reason`` says why) and where it
    came from (``about``: model, version, its run, and a ``description`` for reports)."""

    profile: dict[str, Any] | None
    about: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def champion_reference(name: str, tracking_uri: str | None = None) -> ChampionReference:
    """The drift reference of ``name``'s ``champion`` version."""
    # lazy: mlflow (seconds to import) only where the registry is read, as in promotion.py
    from mlflow.artifacts import download_artifacts, list_artifacts
    from mlflow.exceptions import MlflowException

    client = connect(tracking_uri)
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return ChampionReference(None, reason=f"no registered model {name!r} yet")
    version = aliases.get(CHAMPION)
    if version is None:
        return ChampionReference(None, reason=f"{name!r} has no {CHAMPION} yet")
    model = client.get_model_version(name, str(version))
    about = {"description": f"{CHAMPION} version {version} of {name}", "model": name,
             "version": str(version), "alias": CHAMPION,
             "source_run_id": (model.tags or {}).get(SOURCE_RUN_TAG, model.run_id)}
    folder = f"models:/{name}/{version}/data/{DATA_DIR}"
    if PROFILE_FILE not in {Path(f.path).name for f in list_artifacts(artifact_uri=folder)}:
        return ChampionReference(None, about, f"{about['description']} has no {PROFILE_FILE}"
                                 " (logged without its processed dataset, or before models"
                                 " carried a drift reference)")
    with tempfile.TemporaryDirectory(prefix="grmodel-reference-") as tmp:
        download_artifacts(artifact_uri=f"{folder}/{PROFILE_FILE}", dst_path=tmp)
        profile = read_profile(next(Path(tmp).rglob(PROFILE_FILE)).parent)
    about.update({"trained_rows": profile.get("rows"), "profiled_at": profile.get("created_at"),
                  **{f"dataset_{k}": v for k, v in profile.get("dataset", {}).items()}})
    return ChampionReference(profile, about)
