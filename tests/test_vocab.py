import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grmodel.codec import LabelCodec
from grmodel.config import VocabConfig
from grmodel.vocab import (
    EOS,
    N_SPECIAL,
    PAD,
    SOS,
    Vocabulary,
    VocabularyError,
    build_vocabulary,
    scale_labels,
)


def long_tailed_labels(n=20_000, seed=0):
    """Watch times in seconds with millisecond resolution, a long tail and some zeros."""
    rng = np.random.default_rng(seed)
    seconds = np.floor(rng.lognormal(np.log(7.0) + 6.9, 0.9, n)) / 1000
    seconds[rng.random(n) < 0.02] = 0.0
    return seconds


def literal_algorithm_1(scaled, config):
    """The paper's Algorithm 1 line by line on the full label array (docs/method.md)."""
    residual, q, err, tokens = scaled.copy(), config.q_start, np.inf, []
    positive = scaled > 0
    while err > config.eps and len(tokens) < config.max_iterations:
        o = np.quantile(residual, q, method="inverted_cdf")
        if o == 0:
            break
        tokens.append(int(o))
        residual = np.where(residual < o, residual, residual - o)
        err = np.max(residual[positive] / scaled[positive])
        q = max(q * config.decay, config.q_end)
    return tokens


def test_dynamic_quantile_is_descending_and_complete():
    labels = long_tailed_labels()
    vocab = build_vocabulary(labels, VocabConfig())
    assert vocab.kind == "dynamic_quantile"
    assert np.all(np.diff(vocab.values) < 0)
    assert vocab.values[-1] == 1
    assert vocab.size == len(vocab.values) + N_SPECIAL
    codec = LabelCodec(vocab)
    decoded = codec.decode(codec.encode(labels).sequences)
    scaled = vocab.scale(labels)
    np.testing.assert_array_equal(decoded, scaled / vocab.label_scale)
    # Completeness: within 0.1% for every label of at least 1000 scaled units (1 s).
    big = labels >= 1.0
    assert np.max(np.abs(decoded[big] - labels[big]) / labels[big]) <= 1e-3


def test_params_record_training_labels_and_config():
    labels = long_tailed_labels(5_000)
    config = VocabConfig(q_start=0.999)
    vocab = build_vocabulary(labels, config)
    params = vocab.params
    assert params["n_train_labels"] == labels.size
    assert params["max_train_label"] == labels.max()
    assert params["max_train_label_scaled"] == int(vocab.scale(labels).max())
    assert params["config"]["q_start"] == 0.999
    assert params["stop_reason"] in {"error_below_eps", "zero_quantile"}
    assert params["n_iterations"] >= len(vocab.values) - int(params["appended_unit_token"])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    q_start=st.floats(0.5, 1.0),
    decay=st.floats(0.5, 1.0),
)
def test_dynamic_quantile_matches_literal_algorithm_1(seed, n, q_start, decay):
    rng = np.random.default_rng(seed)
    labels = np.floor(rng.lognormal(rng.uniform(0, 8), rng.uniform(0.1, 2), n)) / 1000
    labels[rng.random(n) < 0.1] = 0.0
    config = VocabConfig(q_start=q_start, q_end=min(0.5, q_start), decay=decay, label_scale=1000.0)
    if not (labels * config.label_scale >= 1).any():
        return
    vocab = build_vocabulary(labels, config)
    scaled = vocab.scale(labels)
    # Zero labels take no token: Algorithm 1 runs on the positive labels.
    expected = sorted(set(literal_algorithm_1(scaled[scaled > 0], config)), reverse=True)
    if expected[-1] != 1:
        expected.append(1)
    assert vocab.values.tolist() == expected


def test_unit_token_appended_when_labels_share_a_step():
    labels = np.array([1.0, 2.0, 5.0, 7.0, 30.0] * 50)  # whole seconds: multiples of 1000 units
    vocab = build_vocabulary(labels, VocabConfig(label_scale=1000.0))
    assert vocab.params["appended_unit_token"]
    assert vocab.values[-1] == 1
    codec = LabelCodec(vocab)
    unseen = np.array([0.001, 0.999, 1.234])
    np.testing.assert_allclose(codec.decode(codec.encode(unseen).sequences), unseen)


def test_depends_only_on_the_labels_passed():
    labels = long_tailed_labels(3_000)
    copy = labels.copy()
    vocab = build_vocabulary(labels, VocabConfig())
    np.testing.assert_array_equal(labels, copy)  # input untouched
    shuffled = np.random.default_rng(1).permutation(labels)
    assert build_vocabulary(shuffled, VocabConfig()).values.tolist() == vocab.values.tolist()
    other = build_vocabulary(labels[:1_000], VocabConfig())
    assert other.params["n_train_labels"] == 1_000


def test_manual_and_binary_contents():
    labels = np.array([0.0, 0.5, 2.0])  # max 2000 scaled units
    manual = build_vocabulary(labels, VocabConfig(kind="manual", label_scale=1000.0))
    assert manual.values.tolist() == [3000, 1000, 500, 300, 100, 50, 30, 10, 5, 3, 1]
    binary = build_vocabulary(labels, VocabConfig(kind="binary", label_scale=1000.0))
    assert binary.values.tolist() == [2**k for k in range(11, -1, -1)]
    exact = build_vocabulary(np.array([1.0]), VocabConfig(kind="binary", label_scale=1000.0))
    assert exact.values[0] == 1024  # the first value past 1000


def test_json_round_trip(tmp_path):
    vocab = build_vocabulary(long_tailed_labels(2_000), VocabConfig())
    path = tmp_path / "sub" / "vocab.json"
    vocab.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temp file left
    loaded = Vocabulary.load(path)
    assert loaded.values.tolist() == vocab.values.tolist()
    assert loaded.kind == vocab.kind
    assert loaded.label_scale == vocab.label_scale
    assert loaded.params == json.loads(json.dumps(vocab.params))
    assert Vocabulary.from_dict(vocab.to_dict()).values.dtype == np.int64


def test_token_values_and_specials():
    vocab = Vocabulary(values=np.array([50, 7, 1]), kind="manual", label_scale=1000)
    assert (PAD, SOS, EOS) == (0, 1, 2)
    np.testing.assert_array_equal(vocab.token_values(), [0, 0, 0, 50, 7, 1])
    assert vocab.token_values().dtype == np.float64


def test_scale_truncates_and_absorbs_float_error():
    np.testing.assert_array_equal(scale_labels(np.array([1.001, 0.0019, 0.0, 2.5]), 1000), [1001, 1, 0, 2500])
    assert scale_labels(np.array([1.001]), 1000).dtype == np.int64


@pytest.mark.parametrize(
    ("labels", "rule"),
    [
        (np.array([]), "empty"),
        (np.zeros(5), "are 0"),
        (np.array([1.0, np.nan]), "finite"),
        (np.array([1.0, np.inf]), "finite"),
        (np.array([1.0, -2.0]), "non-negative"),
    ],
)
def test_bad_labels_name_the_rule(labels, rule):
    with pytest.raises(VocabularyError, match=rule):
        build_vocabulary(labels, VocabConfig())


@pytest.mark.parametrize(
    ("config", "rule"),
    [
        (VocabConfig(q_start=0.8, q_end=0.9), "q_end <= q_start"),
        (VocabConfig(decay=0.0), "decay"),
        (VocabConfig(label_scale=0.0), "label_scale"),
        (VocabConfig(max_iterations=0), "max_iterations"),
    ],
)
def test_bad_config_names_the_rule(config, rule):
    with pytest.raises(VocabularyError, match=rule):
        build_vocabulary(np.array([1.0, 2.0]), config)


def test_iteration_cap_is_recorded():
    vocab = build_vocabulary(long_tailed_labels(2_000), VocabConfig(max_iterations=3))
    assert vocab.params["stop_reason"] == "max_iterations"
    assert vocab.params["n_iterations"] == 3
    assert vocab.values[-1] == 1


@pytest.mark.parametrize(
    ("values", "rule"),
    [([5, 5, 1], "strictly descending"), ([1, 5], "strictly descending"), ([2.5, 1], "integers"),
     ([3, 0], "positive"), ([], "non-empty")],
)
def test_invalid_values_rejected(values, rule):
    with pytest.raises(VocabularyError, match=rule):
        Vocabulary(values=np.array(values), kind="manual", label_scale=1000)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(VocabularyError, match="does not exist"):
        Vocabulary.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(VocabularyError, match="bad.json"):
        Vocabulary.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"kind": "manual", "label_scale": 1000, "values": [1, 5]}))
    with pytest.raises(VocabularyError, match="wrong.json.*descending"):
        Vocabulary.load(wrong)


@pytest.mark.parametrize(("labels", "scale"), [
    (np.array([0.25, 3.5, 8.125, 61.002]), 1000.0),  # seconds with millisecond precision
    (np.array([1_234.0, 25_000.0, 100_007.0, 9e6]), 1.0),  # integer milliseconds
    (np.array([1_000.0, 25_000.0, 1e5, 9e6]), 1e-3),  # whole seconds in ms: units of 1000
    (np.array([2e5 + 1, 3e5 + 3, 7e5 + 9]), 0.1),  # ms, median 3e5: units of 10 ms
    (np.array([0.0, 0.0, 0.0, 12.34, 99.99, 430.5]), 100.0),  # dollars with cents, 50% zeros
    (np.array([3.0, 7.0, 120.0, 15.0]), 1.0),  # whole units: no finer than the data
    (np.array([0.0, 0.137, 0.5, 0.999999, 1.0]), 1e5),  # completion fractions
])
def test_label_scale_is_fitted_to_the_unit(labels, scale):
    vocab = build_vocabulary(labels, VocabConfig())
    assert vocab.label_scale == scale
    assert vocab.params["label_scale_fitted"]
    codec = LabelCodec(vocab)
    decoded = codec.decode(codec.encode(labels).sequences)
    # Within one scaled unit, and one unit is <= 1e-4 of the median positive label.
    assert np.all(np.abs(decoded - labels) <= 1.0 / scale + 1e-12)


def test_a_label_scale_that_zeroes_every_label_is_refused():
    with pytest.raises(VocabularyError, match="scale to 0"):
        build_vocabulary(np.array([0.0001, 0.0]), VocabConfig(label_scale=1000.0))


def test_a_set_label_scale_is_kept():
    assert build_vocabulary(np.array([1.5, 2.5]), VocabConfig(label_scale=10.0)).label_scale == 10.0


def test_zero_inflated_labels_keep_a_fine_vocabulary():
    rng = np.random.default_rng(3)
    spend = np.round(rng.lognormal(3, 1, 20_000), 2)
    labels = np.where(rng.random(20_000) < 0.75, 0.0, spend)
    vocab = build_vocabulary(labels, VocabConfig())
    codec = LabelCodec(vocab)
    stats = codec.length_stats(labels[labels > 0])
    # On all labels Algorithm 1 would stop at its first zero quantile and leave positive labels
    # to hundreds of unit tokens; on the positive part they stay short.
    assert codec.max_decode_len(labels) <= 25
    assert stats["p50"] <= 8
