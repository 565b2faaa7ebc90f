"""One config object per concern, serialised with every artifact.

Every config is a frozen-free dataclass that round-trips through plain JSON/YAML dicts, so a
checkpoint, a report or an MLflow run can be rebuilt from its record. Command lines change a
config with ``section.key=value`` overrides (``train.lr=1e-3``, ``model.n_layers=2``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

VocabKind = Literal["dynamic_quantile", "manual", "binary"]
TFSchedule = Literal["none", "inverse_sigmoid", "linear", "exponential", "fixed"]
MixupMode = Literal["window", "full", "none"]
ClemPass1 = Literal["grad", "detached"]


class ConfigError(ValueError):
    """A config value or override that cannot be applied (names the key and the rule)."""


@dataclass
class DataConfig:
    """Where the processed dataset is and which column is the label."""

    processed_dir: str = ""
    label_column: str = "label"
    # Row caps for quick runs; None means every row.
    max_train_rows: int | None = None
    max_eval_rows: int | None = None


@dataclass
class VocabConfig:
    """Vocabulary construction (docs/method.md, Vocabularies: Algorithm 1 and the Table 3
    alternatives)."""

    kind: VocabKind = "dynamic_quantile"
    # Labels are multiplied by this and truncated to integers before tokenisation. None = fitted
    # on the training labels (grmodel/vocab.py auto_label_scale): 1000 for seconds with ms
    # precision (the paper's x1000), 100 for dollars with cents, 1e5 for fractions in [0, 1].
    label_scale: float | None = None
    q_start: float = 0.9999
    q_end: float = 0.9
    decay: float = 0.99
    eps: float = 1e-6
    # Safety cap on Algorithm 1's loop (it normally stops far earlier).
    max_iterations: int = 10_000


@dataclass
class ModelConfig:
    """GR model sizes and decoding (docs/method.md, Field embeddings and encoder, Decoder,
    Inference). Every size is a value here."""

    emb_dim: int = 128
    encoder_hidden: int = 256
    d_model: int = 128
    n_heads: int = 8
    ffn_dim: int = 256
    n_layers: int = 3
    dropout: float = 0.1
    init_range: float = 0.08
    # The encoder in front of the decoder (and the baselines' backbone): "ffn", the paper's, mean-
    # pools the user fields and the item fields, then the FFN; "field_ffn" keeps every field's
    # embedding apart (one slot per embedding table) for the FFN (grmodel/models/embedding.py).
    encoder: Literal["ffn", "field_ffn"] = "ffn"
    # n_w of eq. 11: the windowed soft-argmax (loss and prediction) keeps the n_w + 1 tokens
    # around the argmax.
    window_size: int = 20
    # Each step's decoded token: "median", the token at the probability-weighted median in value
    # order (an estimate of the conditional median, which MAE rewards; grmodel/models/gr.py
    # value_median), or "argmax", the paper's greedy decoding, which predicts 0 for every row of
    # a table with more zeros than anything else (docs/deviations.md). The soft-argmax window
    # centres on the decoded token.
    decode: Literal["argmax", "median"] = "median"
    # The level at which the first step's distribution is read (median decoding): its token is
    # where the cumulative probability in value order crosses this level, and the row is 0 when
    # <eos> holds at least this much mass. None = chosen after training on the validation split
    # (GRModel.calibrate: the level of the lowest validation MAE, 0.5 unless another is better);
    # a number fixes it (0.5: the plain value median). Later steps read their median.
    decode_level: float | None = None
    # What a decoded step is worth: this weight of eq. 11's windowed soft-argmax (Σ p_k·v_k over
    # the window) plus the rest of the decoded token's own value. 1 = the paper's reading; 0 =
    # the decoded sequence's sum, the point the value median aims at (rows with the same sum
    # are then ranked by their soft value). None = chosen with decode_level on the validation
    # split (GRModel.calibrate, from DECODE_SOFT_WEIGHTS; 1 unless another is better).
    decode_soft: float | None = None
    # A row decoded as 0 (<eos> first) predicts 0 + ε·P(first token is not <eos>), ε a
    # thousandth of the smallest token value: its MAE moves by less than ε, and the rows the
    # median calls 0 (most rows of a zero-inflated table) are ranked by their chance of a
    # non-zero label instead of tying (docs/deviations.md). false: exactly 0.
    zero_tie_break: bool = True
    # Maximum decode steps (tokens before <eos>); None = derived from the training labels.
    max_decode_len: int | None = None


@dataclass
class TrainConfig:
    """Optimisation, loss weights and CLEM (docs/method.md, Loss, CLEM and Training)."""

    epochs: int = 20
    batch_size: int = 512  # per process: under torchrun the global batch is this × world size
    lr: float = 5e-4
    # "constant": Adam at train.lr throughout (the paper); "cosine": from train.lr down to 0
    # over the run's steps (epochs x batches, or train.max_steps), half a cosine wave
    # (grmodel/training/epochs.py learning_rate).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    embedding_weight_decay: float = 1e-4
    seed: int = 2024
    lambda_ce: float = 10.0
    lambda_huber: float = 1.0
    huber_delta: float = 1.0  # in huber units
    # Huber reads labels in this unit; None = fitted: the power of ten just below the train
    # median's MAE (grmodel/models/gr.py huber_unit), 1 s on KuaiRec watch time.
    huber_unit: float | None = None
    # CLEM: teacher-forcing probability schedule over the global step, and mixup mode.
    tf_schedule: TFSchedule = "inverse_sigmoid"
    tf_p0: float = 1.0
    # inverse sigmoid: p = p0 * w / (w + exp(step / w)); None = auto, p crosses p0/2 mid-run.
    tf_omega: float | None = None
    # linear: p = p0 - k*step (None = auto, reaches 0 at the last step);
    # exponential: p = p0 * k**step (None = auto, reaches 1% of p0 at the last step).
    tf_k: float | None = None
    tf_fixed_p: float = 0.5
    mixup: MixupMode = "window"
    mixup_window: int = 20  # tokens around the argmax mixed by mixup=window (n_w, eq. 12)
    # CLEM pass 1: "grad" keeps the gradient through the mixture weights and dropout on, as in
    # the paper and the authors' code; "detached" cuts both (faster, not the paper's).
    clem_pass1: ClemPass1 = "grad"
    # A model whose best validation predictions are near-constant (std <= collapse_std_ratio x
    # the labels' std) or no better than the train median (grmodel/collapse.py): "fail" ends
    # the run without writing the model, "warn" keeps it with the verdict in its checkpoint.
    on_collapse: Literal["fail", "warn"] = "fail"
    collapse_std_ratio: float = 0.01
    # Validation-based model selection and early stopping.
    patience: int = 3
    select_metric: Literal["mae", "xauc"] = "mae"
    device: str = "auto"  # auto | cpu | cuda
    amp_bf16: bool = True  # used only on CUDA
    num_threads: int | None = None
    progress: bool = True
    max_steps: int | None = None  # cap on optimiser steps (smoke runs, benchmarks)
    # Input: the train split in memory, or streamed from its Parquet row groups through a
    # seeded shuffle buffer (grmodel/data/streaming.py), for data that does not fit in memory.
    streaming: bool = False
    shuffle_buffer: int = 65_536  # streaming: rows each loader worker holds back for shuffling
    loader_workers: int = 0  # streaming: DataLoader worker processes per rank
    # Training-state checkpoints for resuming a killed run (written when a state directory is in
    # use, as by `grmodel train`): at every epoch end, and every this many steps when set.
    checkpoint_every_steps: int | None = None


@dataclass
class EvalConfig:
    """Evaluation protocol (docs/baselines.md, Evaluation protocol)."""

    batch_size: int = 4096
    xauc: Literal["reference", "tie_aware"] = "reference"
    interval_width: float = 2.0
    n_intervals: int = 10
    histogram_bins: int = 50


@dataclass
class RunConfig:
    """Everything one training run needs; serialised into its checkpoint."""

    model_name: str = "gr"
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Options of non-GR model heads (baselines), by name; recorded with results.
    head: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        config = _build(cls, raw, "")
        check_ranges(config)
        return config

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def with_overrides(self, overrides: list[str]) -> RunConfig:
        raw = self.to_dict()
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r}: expected section.key=value")
            _set_path(raw, key.strip(), _parse_scalar(value.strip()), item)
        return RunConfig.from_dict(raw)


# The paper's Table 4 rows, as overrides of the default (full CLEM) configuration.
CLEM_ABLATIONS: dict[str, list[str]] = {
    "full": [],
    "full_detached_pass1": ["train.clem_pass1=detached"],
    "no_clem": ["train.tf_schedule=none", "train.mixup=none"],
    "em_teacher_forcing": ["train.tf_schedule=fixed", "train.tf_fixed_p=1.0"],
    "cl_without_em": ["train.mixup=none"],
    "linear": ["train.tf_schedule=linear"],
    "exponential": ["train.tf_schedule=exponential"],
    "fixed_p_0.5": ["train.tf_schedule=fixed", "train.tf_fixed_p=0.5"],
    "fixed_p_0": ["train.tf_schedule=fixed", "train.tf_fixed_p=0.0"],
}


# Named per-model defaults over the library's, applied before any override by everything that
# builds a model's config (the pipeline and the experiments, through grmodel/comparison/plan.py).
# TPM: at the spec's w_var = 1.0 the (correctly computed) sqrt(Var) term collapses TPM to the
# median on KuaiRec-shaped data; 0.1 trains (README, main job). GBDT: train.lr is its shrinkage,
# LightGBM's usual 0.05 rather than a network's step size. GR: every field its own slot in the
# encoder (docs/deviations.md 11); model.encoder=ffn is the paper's.
MODEL_DEFAULTS: dict[str, tuple[str, ...]] = {
    "gr": ("model.encoder=field_ffn",),
    "tpm": ("head.tpm_w_var=0.1",),
    "gbdt": ("train.lr=0.05",),
}


def model_defaults(model_name: str) -> list[str]:
    """The ``key=value`` defaults of ``model_name`` (:data:`MODEL_DEFAULTS`), often none."""
    return list(MODEL_DEFAULTS.get(model_name, ()))


# Configs and dataset specs are a few kilobytes: bounded before they are parsed, so a huge or
# hostile file (a YAML alias bomb, a thousandfold nesting) is refused in milliseconds.
MAX_TEXT_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def read_small_text(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a config-sized file, refused past ``limit`` bytes before it is read
    (UnicodeDecodeError for text that is not UTF-8)."""
    path = Path(path)
    size = path.stat().st_size
    if size > limit:
        raise ConfigError(f"{what} {path}: {size:,} bytes (rule: at most {limit:,} bytes; a config"
                          " or spec is a small text file)")
    return path.read_text(encoding="utf-8")


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with aliases expanded at most :data:`MAX_YAML_NODES` nodes deep and
    no recursive alias: what a YAML alias bomb would otherwise expand without bound."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply (rule: a YAML or JSON file of at most a"
                          " few levels)") from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as its problem and position, without the file's text that PyYAML quotes
    (the file may not be the one meant: never echo its content)."""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _check_expansion(root: yaml.Node, source: str) -> None:
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: a YAML alias refers to itself (rule: no recursive"
                              " aliases)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise ConfigError(f"{source}: expands to more than {MAX_YAML_NODES:,} YAML nodes"
                              " through aliases (rule: aliases may not multiply a file beyond"
                              f" {MAX_YAML_NODES:,} values)")
        sizes[key] = total
        return total

    size(root)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a JSON or YAML config file (or the defaults) and apply ``key=value`` overrides."""
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        is_yaml = path.suffix in {".yaml", ".yml"}
        try:
            text = read_small_text(path, "config file")
            raw = (load_yaml(text, f"config file {path}") or {}) if is_yaml else json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
            detail = (yaml_problem(exc) if isinstance(exc, yaml.YAMLError)
                      else " ".join(str(exc).split())[:200])
            raise ConfigError(f"config file {path}: not valid UTF-8 {'YAML' if is_yaml else 'JSON'}"
                              f" ({detail}) (rule: a config file is a UTF-8 JSON or YAML mapping)"
                              ) from None
        except RecursionError:
            raise ConfigError(f"config file {path}: nested too deeply (rule: a YAML or JSON file"
                              " of at most a few levels)") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        cfg = RunConfig.from_dict(raw)
    return cfg.with_overrides(overrides or [])


# Bounds of numeric config values (inclusive lower, exclusive upper where stated): a value out
# of range fails here, naming the key, instead of deep inside a training run.
RANGES: dict[str, tuple[float, float | None]] = {
    "train.epochs": (1, None), "train.batch_size": (1, None), "train.patience": (1, None),
    "train.max_steps": (1, None), "train.checkpoint_every_steps": (1, None),
    "train.num_threads": (1, None), "train.shuffle_buffer": (1, None),
    "train.loader_workers": (0, None), "train.mixup_window": (1, None),
    "train.tf_p0": (0, 1), "train.tf_fixed_p": (0, 1), "train.huber_delta": (1e-12, None),
    "train.lambda_ce": (0, None), "train.lambda_huber": (0, None),
    "train.embedding_weight_decay": (0, None), "train.lr": (1e-12, None),
    "eval.batch_size": (1, None), "eval.n_intervals": (1, None), "eval.histogram_bins": (1, None),
    "eval.interval_width": (1e-12, None),
    "data.max_train_rows": (1, None), "data.max_eval_rows": (1, None),
    "vocab.label_scale": (1e-12, None), "vocab.max_iterations": (1, None),
    "model.emb_dim": (1, None), "model.encoder_hidden": (1, None), "model.n_heads": (1, None),
    "model.ffn_dim": (1, None), "model.n_layers": (1, None), "model.window_size": (1, None),
    "model.max_decode_len": (1, None), "model.dropout": (0, 0.999999),
    "model.d_model": (1, None), "model.init_range": (0, None), "model.decode_level": (0.01, 0.99),
    "model.decode_soft": (0, 1),
    "vocab.q_start": (0, 1), "vocab.q_end": (0, 1), "vocab.decay": (1e-12, 1), "vocab.eps": (0, None),
    "train.seed": (0, 2**32 - 1), "train.huber_unit": (1e-12, None), "train.tf_omega": (1e-12, None),
    "train.tf_k": (1e-12, None), "train.collapse_std_ratio": (0, None),
}


def check_ranges(config: RunConfig) -> None:
    """Raise ConfigError for the first value outside :data:`RANGES` (None means unset)."""
    for key, (low, high) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name, None)
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"config {key}={value!r}: out of range (rule: {key} must be {bound})")


def _parse_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in {"none", "null"}:
        return None
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set_path(raw: dict[str, Any], key: str, value: Any, item: str) -> None:
    parts = key.split(".")
    node: Any = raw
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"override {item!r}: unknown section {part!r}")
        node = node[part]
    leaf = parts[-1]
    if not isinstance(node, dict):
        raise ConfigError(f"override {item!r}: {key!r} is not a section")
    # The free-form head options accept new keys; typed sections do not.
    if leaf not in node and parts[0] != "head":
        raise ConfigError(f"override {item!r}: unknown key {key!r}")
    node[leaf] = value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {prefix or '<root>'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"config section {prefix or '<root>'!r}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        path = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, path)
        else:
            kwargs[name] = _coerce(hint, value, path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value is None and "none" in allowed:  # `key=none` reads as null before coercion
            value = "none"
        if value not in allowed:
            raise ConfigError(f"config {path}={value!r}: must be one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if origin is dict and isinstance(value, dict):
        return dict(value)
    raise ConfigError(f"config {path}={value!r}: expected {getattr(hint, '__name__', hint)}")
