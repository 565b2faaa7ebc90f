"""Stage 9: MLflow tracking of the run, GR registered as the challenger, the promotion gate."""


from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def register(
    raw: Input[Dataset],
    raw_validation: Input[Artifact],
    processed: Input[Dataset],
    processed_validation: Input[Artifact],
    drift_report: Input[Artifact],
    vocabulary: Input[Artifact],
    tokens: Input[Dataset],
    gr_model: Input[Model],
    baseline_models: Input[list[Model]],
    evaluation: Input[Artifact],
    data_version: str,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    pipeline_run_id: str,
    pipeline_name: str,
    model_name: str,
    min_mae_rel_improvement: float,
    max_xauc_drop: float,
    require_beats_baselines: list,
    max_champion_decay: float,
    decision_record: Output[Artifact],
    decision: Output[Markdown],
) -> str:
    """Put every stage's MLflow run under the pipeline run's parent (logged live by the stage,
    or from its record), log GR and the baselines as models, register GR as a new version of
    ``model_name`` (alias ``challenger``) and move ``champion`` to it only if it
    passes the thresholds against the champion and this run's baselines (both scored on the
    test rows through their own encoders); the champion's decay since its promotion is logged
    and flagged beyond ``max_champion_decay``. Returns the verdict."""
    import shutil
    from pathlib import Path

    from grmodel.pipeline.publish import TrackingTarget, track_and_register
    from grmodel.registry import PromotionPolicy

    target = TrackingTarget(tracking_uri, pipeline_run_id, mlflow_experiment, mlflow_artifact_root,
                            pipeline_name)
    policy = PromotionPolicy(min_mae_rel_improvement, max_xauc_drop, tuple(require_beats_baselines),
                             max_champion_decay)
    stage_dirs = [raw.path, raw_validation.path, processed.path, processed_validation.path,
                  drift_report.path, vocabulary.path, tokens.path, gr_model.path,
                  *[m.path for m in baseline_models], evaluation.path]
    record = track_and_register(
        target, data_version=data_version, stage_dirs=stage_dirs, processed=processed.path,
        gr_model_dir=gr_model.path, evaluation_dir=evaluation.path, model_name=model_name,
        policy=policy, out_dir=decision_record.path)
    shutil.copyfile(Path(decision_record.path) / "decision.md", decision.path)
    decision_record.metadata.update({"version": record["challenger_version"], "verdict": record["verdict"]})
    decision.metadata.update({"model_name": model_name, "version": record["challenger_version"],
                              "verdict": record["verdict"]})
    return f"{model_name} v{record['challenger_version']}: {record['verdict']}"
