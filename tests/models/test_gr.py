from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grmodel.checkpoint import load_checkpoint
from grmodel.codec import LabelCodec
from grmodel.config import CLEM_ABLATIONS, RunConfig, TrainConfig
from grmodel.features import FeatureSchema, read_manifest, read_split
from grmodel.models.gr import (
    GRModel,
    teacher_forcing_probability,
    value_median,
    window_mask,
    windowed_soft_argmax,
)
from grmodel.vocab import EOS, N_SPECIAL, PAD, SOS, Vocabulary

SMALL = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=32", "model.n_heads=4",
         "model.ffn_dim=64", "model.n_layers=2"]


def make_model(dataset, overrides=()) -> tuple[GRModel, dict]:
    manifest = read_manifest(dataset)
    schema = FeatureSchema.from_dict(manifest["features"])
    frame = read_split(dataset, "train")
    config = RunConfig().with_overrides([*SMALL, *overrides])
    labels = frame["label"].to_numpy()
    model = GRModel(schema, config, GRModel.fit_label_state(labels, config))
    ids, mask = schema.arrays(frame)
    batch = {
        "ids": torch.as_tensor(ids[:64]),
        "mask": torch.as_tensor(mask[:64]),
        "label": torch.as_tensor(labels[:64], dtype=torch.float32),
        "tokens": torch.as_tensor(model.targets(labels[:64])["tokens"]),
    }
    return model, batch


def test_window_mask_is_centred_and_truncated_at_the_value_tokens():
    logits = torch.full((3, 12), -5.0)
    logits[0, 7] = logits[1, 3] = logits[2, 11] = 5.0
    mask = window_mask(logits, 4)  # n_w = 4: the 5 ids [δ - 2, δ + 2]
    assert mask[0].nonzero().flatten().tolist() == [5, 6, 7, 8, 9]
    assert mask[1].nonzero().flatten().tolist() == [3, 4, 5]  # never a special token
    # The smallest token's window reaches <eos> (value 0, just below it in value order).
    assert mask[2].nonzero().flatten().tolist() == [EOS, 9, 10, 11]
    assert window_mask(logits, 50)[:, 3:].all()


def test_value_median_is_the_weighted_median_in_value_order():
    # ids 3..7 hold values 50, 40, 30, 20, 10; <eos> is value 0.
    probs = torch.tensor([[0.0, 0.0, 0.3, 0.25, 0.0, 0.0, 0.0, 0.45]])
    logits = probs.clamp_min(1e-9).log()
    assert logits.argmax().item() == 7  # the mode: value 10
    assert value_median(logits).item() == 7  # cum: eos .3, value 10 -> .75 >= .5
    probs = torch.tensor([[0.0, 0.0, 0.2, 0.55, 0.0, 0.0, 0.0, 0.25]])
    assert value_median(probs.clamp_min(1e-9).log()).item() == 3  # .2, .45 (value 10), 1 (50)
    probs = torch.tensor([[0.0, 0.0, 0.5, 0.25, 0.0, 0.0, 0.0, 0.25]])
    assert value_median(probs.clamp_min(1e-9).log()).item() == EOS  # half the mass: stop


@pytest.mark.parametrize("special", [PAD, SOS, EOS])
def test_a_special_argmax_keeps_only_itself(special):
    logits = torch.zeros(1, 12)
    logits[0, special] = 3.0
    assert window_mask(logits, 20)[0].nonzero().flatten().tolist() == [special]


def test_an_eos_step_is_worth_zero_when_its_mass_is_on_eos():
    # <eos> (id 2) sits next to the largest value tokens (ids 3, 4, ...). However much
    # probability those hold, a step whose argmax is <eos> adds nothing.
    values = torch.tensor([0.0, 0.0, 0.0, 90_000.0, 40_000.0, 20_000.0, 5.0, 1.0])
    for rest in (0.0, 2.0, 2.9):
        logits = torch.tensor([[-9.0, -9.0, 3.0, rest, rest, rest, rest, rest]])
        assert logits.argmax().item() == EOS
        assert windowed_soft_argmax(logits, values, 20).item() == 0.0


def test_windowed_soft_argmax_is_the_windowed_expectation():
    logits = torch.tensor([[-9.0, -9.0, -9.0, 0.0, 1.0, 3.0, 1.0, 0.0]])
    values = torch.tensor([0.0, 0.0, 0.0, 40.0, 30.0, 20.0, 10.0, 1.0])
    probs = torch.softmax(logits, -1)[0]
    expected = sum(probs[k] * values[k] for k in (4, 5, 6))  # n_w = 2: ids 4..6, not renormalised
    assert windowed_soft_argmax(logits, values, 2).item() == pytest.approx(expected.item())
    around_3 = sum(probs[k] * values[k] for k in (3, 4))  # another centre: the window moves
    centre = torch.tensor([3])
    assert windowed_soft_argmax(logits, values, 2, centre).item() == pytest.approx(around_3.item())


@pytest.mark.parametrize("schedule", ["inverse_sigmoid", "linear", "exponential"])
def test_teacher_forcing_decays_over_the_whole_run(schedule):
    cfg = TrainConfig(tf_schedule=schedule)
    ps = [teacher_forcing_probability(s, 1000, cfg) for s in range(0, 1001, 50)]
    assert ps[0] == pytest.approx(1.0, abs=0.02)
    assert all(a >= b for a, b in zip(ps, ps[1:]))
    assert ps[-1] < 0.05


def test_inverse_sigmoid_crosses_half_mid_run_and_never_overflows():
    cfg = TrainConfig(tf_schedule="inverse_sigmoid")
    assert teacher_forcing_probability(5000, 10_000, cfg) == pytest.approx(0.5, abs=1e-3)
    fixed = TrainConfig(tf_schedule="inverse_sigmoid", tf_omega=5.0)
    assert teacher_forcing_probability(10**9, 10, fixed) == 0.0
    w = 50.0
    assert teacher_forcing_probability(120, 10, TrainConfig(tf_omega=w)) == pytest.approx(
        w / (w + math.exp(120 / w))
    )


def test_fixed_and_none_schedules():
    assert teacher_forcing_probability(7, 10, TrainConfig(tf_schedule="fixed", tf_fixed_p=0.3)) == 0.3
    assert teacher_forcing_probability(7, 10, TrainConfig(tf_schedule="none")) == 1.0


@pytest.mark.parametrize("ablation", sorted(CLEM_ABLATIONS))
def test_every_table4_row_is_a_config_that_trains(planted_dataset, ablation):
    torch.manual_seed(0)
    model, batch = make_model(planted_dataset, CLEM_ABLATIONS[ablation])
    loss, parts = model.loss(batch, step=10, total_steps=100)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.token_embedding.weight.grad is not None
    assert {"ce", "huber", "p_truth"} <= parts.keys()


@pytest.mark.parametrize("mixup", ["window", "full", "none"])
def test_cached_and_uncached_decoding_agree(planted_dataset, mixup):
    torch.manual_seed(0)
    model, batch = make_model(planted_dataset, [f"train.mixup={mixup}"])
    model.eval()
    # An untrained model emits <eos> at random steps: raise the odds of varied lengths.
    cached = model.generate(batch["ids"], batch["mask"], use_cache=True)
    uncached = model.generate(batch["ids"], batch["mask"], use_cache=False)
    assert torch.allclose(cached, uncached, atol=1e-5, rtol=1e-5)
    assert (cached >= 0).all()


def test_early_exit_and_cache_change_speed_not_predictions(planted_dataset, trained_gr):
    model, _ = load_checkpoint(trained_gr.model_dir)
    ids, mask = (torch.as_tensor(a) for a in model.schema.arrays(read_split(planted_dataset, "test")))
    _, tokens = model.generate(ids, mask, early_exit=False, return_tokens=True)
    lengths = (tokens != 0).sum(dim=1)
    # Rows ending early outnumber the rest 2:1, so the batch is compacted mid-decode.
    short = (lengths == lengths.min()).nonzero().flatten()
    long = (lengths > lengths.min()).nonzero().flatten()[: max(1, len(short) // 2)]
    assert len(short) >= 2 and len(long) >= 1
    ids, mask = ids[torch.cat([short, long])], mask[torch.cat([short, long])]
    reference, tokens = model.generate(ids, mask, use_cache=False, early_exit=False,
                                       return_tokens=True)
    for use_cache in (True, False):
        for early_exit in (True, False):
            pred, toks = model.generate(ids, mask, use_cache=use_cache, early_exit=early_exit,
                                        return_tokens=True)
            assert torch.allclose(pred, reference, atol=1e-5, rtol=1e-5)
            assert torch.equal(toks, tokens)


def test_rows_stop_at_eos_and_decoding_is_capped(planted_dataset):
    model, batch = make_model(planted_dataset)
    model.eval()
    with torch.no_grad():
        model.head.bias.fill_(0.0)
        model.head.weight.zero_()
        model.head.bias[2] = 100.0  # <eos> always wins: one step per row, value ≈ 0
    predicted = model.predict(batch["ids"], batch["mask"])
    assert torch.allclose(predicted, torch.zeros(64, dtype=predicted.dtype), atol=1e-3)
    with torch.no_grad():
        model.head.bias[2] = -100.0
        model.head.bias[3] = 100.0  # the largest token always wins: capped at max length + 1
    top = model.vocab.token_values()[3] / model.vocab.label_scale
    expected = top * (model.max_decode_len + 1)
    np.testing.assert_allclose(model.predict(batch["ids"], batch["mask"]).numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("tie_break", [True, False])
def test_rows_decoded_as_zero_are_ranked_by_their_nonzero_mass(planted_dataset, tie_break):
    """Rows whose first step decodes <eos> predict 0 (model.zero_tie_break=false), or a value
    below a thousandth of the smallest token that grows with the first step's mass off <eos>;
    rows decoded as a value are untouched."""
    model, batch = make_model(planted_dataset, [f"model.zero_tie_break={str(tie_break).lower()}"])
    model.eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-100.0)
        model.head.bias[EOS] = 5.0
        model.head.bias[3] = 0.0  # the largest token: some mass, never the median
        # One input field sets how much: rows differ in their first step's non-<eos> mass.
        model.head.weight[3, 0] = 1.0
    pred = model.predict(batch["ids"], batch["mask"])
    if not tie_break:
        assert torch.equal(pred, torch.zeros(64))
        return
    smallest = model.vocab.token_values()[3:].min() / model.vocab.label_scale
    assert (pred > 0).all() and (pred < 1e-3 * smallest).all()
    with torch.no_grad():
        cross = model.encode(batch["ids"], batch["mask"])
        first = model.decode(model.token_embedding.weight[SOS].expand(64, 1, -1), cross)[:, -1]
    nonzero = 1 - torch.softmax(first, -1)[:, EOS]
    assert len(set(pred.tolist())) > 1
    assert (pred[nonzero.argsort()].diff() >= 0).all()  # ordered as the non-<eos> mass
    with torch.no_grad():
        model.head.bias[EOS] = -100.0
        model.head.bias[3] = 100.0  # decoded as values: no tie-break added
    top = model.vocab.token_values()[3] / model.vocab.label_scale
    np.testing.assert_allclose(model.predict(batch["ids"], batch["mask"]).numpy(),
                               top * (model.max_decode_len + 1), rtol=1e-4)


def test_codec_vocabulary_and_decoder_values_line_up(planted_dataset):
    """Logits that pick the codec's tokens step by step sum back to the label exactly.

    Ties token ids (codec) to token values (vocabulary) to the value the decoder adds per step
    (windowed soft-argmax): a shifted id or value anywhere breaks the equality.
    """
    model, _ = make_model(planted_dataset)
    labels = np.array([0.0, 0.001, 1.5, 7.25, 33.333, 180.0])
    sequences = model.codec.encode(labels).sequences[:, 1:]  # drop <sos>: tokens, <eos>, <pad>
    logits = torch.full((*sequences.shape, model.vocab.size), -100.0)
    logits.scatter_(-1, torch.as_tensor(sequences).unsqueeze(-1), 100.0)
    steps = windowed_soft_argmax(logits, model.token_values, model.window)
    emitted = torch.as_tensor(sequences != 0)
    restored = (steps * emitted).sum(dim=1).double() / model.vocab.label_scale
    np.testing.assert_allclose(restored.numpy(), labels, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(model.codec.decode(sequences), labels, rtol=1e-3, atol=1e-3)


def test_the_label_state_holds_numpys_statistics_of_the_label_array(planted_dataset):
    """Fitted from the labels counted by value (the one fitting, shared with the engines that
    aggregate counts), the label state is what numpy computes on the array itself."""
    labels = read_split(planted_dataset, "train")["label"].to_numpy()
    config = RunConfig().with_overrides(SMALL)
    state = GRModel.fit_label_state(labels, config)
    lengths = LabelCodec(Vocabulary.from_dict(state["vocab"])).encode(labels).lengths
    p50, p90, p99 = np.quantile(lengths, [0.5, 0.9, 0.99])
    histogram = {int(k): int(c) for k, c in enumerate(np.bincount(lengths)) if c}
    assert state["length_stats"] == {
        "n": labels.size, "min": int(lengths.min()), "mean": float(lengths.mean()),
        "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": int(lengths.max()),
        "histogram": histogram}
    assert state["max_decode_len"] == int(lengths.max())
    spread = np.mean(np.abs(labels - np.median(labels)))
    assert state["huber_unit"] == 10.0 ** math.floor(math.log10(spread))
    assert GRModel.fit_label_state(labels, config.with_overrides(["train.huber_unit=0.01"])
                                   )["huber_unit"] == 0.01


def _padded_loss(model: GRModel, batch: dict, p_truth: float) -> torch.Tensor:
    """Eq. 6 on the whole padded grid, the way the decoder ran before it was packed: the
    reference the packed decoder must equal (dropout off; p_truth 0 or 1, so no draws)."""
    tokens = batch["tokens"][:, : int((batch["tokens"] != PAD).sum(dim=1).max())]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    cross = model.encode(batch["ids"], batch["mask"])
    teacher = model.token_embedding(inputs)
    if p_truth >= 1.0:
        logits = model.decode(teacher, cross)
    else:
        fed_back = model.next_input(model.decode(teacher, cross)[:, :-1])
        logits = model.decode(torch.cat([teacher[:, :1], fed_back], dim=1), cross)
    rows = tokens.shape[0]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           targets.reshape(-1), ignore_index=PAD,
                                           reduction="sum") / rows
    y_hat = (model.step_value(logits) * (targets != PAD)).sum(dim=1) / model.vocab.label_scale
    unit, tc = model.huber_unit, model.config.train
    huber = torch.nn.functional.huber_loss(y_hat / unit, batch["label"] / unit,
                                           delta=tc.huber_delta)
    return tc.lambda_ce * ce + tc.lambda_huber * huber


@pytest.mark.parametrize("p_truth", [1.0, 0.0])
@pytest.mark.parametrize("mixup", ["window", "full"])
def test_the_packed_decoder_computes_the_padded_grids_loss_and_gradient(planted_dataset, p_truth,
                                                                         mixup):
    torch.manual_seed(0)
    model, batch = make_model(planted_dataset, ["train.tf_schedule=fixed",
                                                f"train.tf_fixed_p={p_truth}",
                                                f"train.mixup={mixup}"])
    assert (batch["tokens"] != PAD).sum(dim=1).unique().numel() > 2  # rows of several lengths
    model.eval()  # dropout off: both ways then compute the same function
    packed, _ = model.loss(batch, step=10, total_steps=100)
    packed.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    reference = _padded_loss(model, batch, p_truth)
    reference.backward()
    assert packed.item() == pytest.approx(reference.item(), rel=1e-5)
    for got, want in zip(grads, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_value_median_at_a_level_reads_that_quantile():
    # ids 3..7 hold values 50, 40, 30, 20, 10; <eos> is value 0.
    probs = torch.tensor([[0.0, 0.0, 0.35, 0.25, 0.0, 0.0, 0.0, 0.4]])
    logits = probs.clamp_min(1e-9).log()
    assert value_median(logits).item() == 7  # cum .35 at 0, .75 at 10
    assert value_median(logits, 0.35).item() == EOS  # <eos> holds at least the level
    assert value_median(logits, 0.8).item() == 3  # the 0.8 quantile: value 50


def test_the_decode_level_is_calibrated_on_valid_and_saved(planted_dataset, tmp_path, gr_config):
    """A validation split with more zeros than training moves the first step's level down; the
    chosen level lives in the label state, so the saved model decodes with it."""
    from grmodel.training.loop import train_model

    cfg = gr_config(planted_dataset, "train.epochs=1", "train.max_steps=20")
    result = train_model(cfg, tmp_path / "m")
    model, meta = load_checkpoint(result.model_dir)
    calibration = meta["calibration"]
    assert calibration["decode_level"] == meta["label_state"]["decode_level"] == model.decode_level
    assert calibration["valid_mae"] <= calibration["valid_mae_at_0.5"]
    frame = read_split(planted_dataset, "valid")
    ids, mask = model.schema.arrays(frame)
    ids_t, mask_t = torch.as_tensor(ids), torch.as_tensor(mask)

    def predict() -> np.ndarray:
        return model.predict(ids_t, mask_t).double().numpy()

    # Labels of the same rows, mostly 0: predicting 0 more often is better, so a lower level.
    label = frame["label"].to_numpy() * (np.arange(len(frame)) % 4 == 0)
    record = model.calibrate(predict, label)
    assert record["decode_level"] < 0.5 and record["valid_mae"] < record["valid_mae_at_0.5"]
    chosen = predict()
    model.label_state["decode_level"] = 0.5
    assert chosen.mean() < predict().mean()  # more rows decoded as 0, smaller first tokens
    # A fixed level is never calibrated, and is what the model decodes with; the soft-argmax
    # weight is still chosen unless it is fixed too.
    state = meta["label_state"] | {"decode_level": 0.5}
    fixed = GRModel(model.schema, cfg.with_overrides(["model.decode_level=0.5"]), state)
    record = fixed.calibrate(predict, label)
    assert record["decode_level"] == fixed.decode_level == 0.5
    assert record["decode_soft"] == fixed.decode_soft and list(record["tried"]) == ["0.50"]
    both = cfg.with_overrides(["model.decode_level=0.5", "model.decode_soft=1"])
    fixed = GRModel(model.schema, both, state | {"decode_soft": 1.0})
    assert fixed.calibrate(predict, label) is None and fixed.decode_soft == 1.0


def test_the_soft_weight_reads_the_token_sum_or_the_soft_argmax_and_is_chosen_on_valid(
        planted_dataset, tmp_path, gr_config):
    """Weight 0 predicts the decoded sequence's value (ties ranked by the soft value, within ε),
    1 the paper's soft-argmax sum, and between them the blend; calibration picks the weight of
    the lowest validation MAE at the chosen level."""
    from grmodel.training.loop import train_model

    cfg = gr_config(planted_dataset, "train.epochs=1", "train.max_steps=20", "model.decode_level=0.5")
    model, meta = load_checkpoint(train_model(cfg, tmp_path / "m").model_dir)
    frame = read_split(planted_dataset, "valid")
    ids, mask = (torch.as_tensor(a) for a in model.schema.arrays(frame))

    def read(weight: float) -> np.ndarray:
        model.label_state["decode_soft"] = weight
        return model.predict(ids, mask).double().numpy()

    model.label_state["decode_soft"] = 0.0
    _, tokens = model.generate(ids, mask, return_tokens=True)
    sequence = model.codec.decode(tokens.numpy())
    epsilon = 1e-3 * float(model.token_values[N_SPECIAL:].min()) / model.vocab.label_scale
    token_read, soft_read = read(0.0), read(1.0)
    np.testing.assert_allclose(token_read, sequence + epsilon, atol=epsilon, rtol=1e-6)
    np.testing.assert_allclose(read(0.25), token_read + 0.25 * (soft_read - token_read),
                               atol=2 * epsilon, rtol=1e-6)
    # Rows with the same decoded sequence are ordered as their soft values are.
    values, counts = np.unique(sequence[sequence > 0], return_counts=True)
    same = sequence == values[counts.argmax()]
    assert same.sum() >= 2
    assert np.array_equal(np.argsort(token_read[same], kind="stable"),
                          np.argsort(soft_read[same], kind="stable"))
    # The label is the token reading itself: weight 0 is chosen; the soft reading: weight 1.
    free = GRModel(model.schema, cfg.with_overrides(["model.decode_level=0.5"]), meta["label_state"])
    free.load_state_dict(model.state_dict())
    free.eval()

    def predict() -> np.ndarray:
        return free.predict(ids, mask).double().numpy()

    assert free.calibrate(predict, token_read)["decode_soft"] == free.decode_soft == 0.0
    assert free.calibrate(predict, soft_read)["decode_soft"] == free.decode_soft == 1.0
