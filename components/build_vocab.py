"""Stage 5: GR's dynamic-quantile vocabulary from the training labels."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from grmodel.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def build_vocab(
    processed: Input[Dataset],
    data_version: str,
    overrides: list,
    vocabulary: Output[Artifact],
):
    """Build GR's vocabulary (its label state) with GR's config after ``overrides``."""
    from grmodel.pipeline import stages

    result = stages.build_vocab(processed.path, vocabulary.path, overrides)
    vocabulary.metadata.update({"data_version": data_version, **result})
