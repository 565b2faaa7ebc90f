import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from grmodel.codec import EncodedLabels, LabelCodec
from grmodel.config import VocabConfig
from grmodel.vocab import EOS, N_SPECIAL, PAD, SOS, Vocabulary, build_vocabulary

RNG = np.random.default_rng(0)
TRAIN = np.floor(RNG.lognormal(np.log(7000.0), 0.9, 20_000)) / 1000  # seconds, ms resolution
VOCABS = {
    kind: build_vocabulary(TRAIN, VocabConfig(kind=kind))
    for kind in ("dynamic_quantile", "manual", "binary")
}

# Labels in seconds: millisecond grids, arbitrary floats, zeros and values past the training max.
labels_strategy = arrays(
    np.float64,
    st.integers(0, 60),
    elements=st.one_of(
        st.integers(0, 400_000).map(lambda ms: ms / 1000),
        st.floats(0, 2_000, allow_nan=False, allow_infinity=False),
        st.just(0.0),
    ),
)
kinds = st.sampled_from(sorted(VOCABS))


def greedy_reference(scaled_label, values):
    """The paper's greedy loop, one label at a time (docs/method.md, Greedy label encoding)."""
    remainder, tokens = int(scaled_label), []
    for value in values:
        while remainder >= value:
            remainder -= value
            tokens.append(int(value))
    return tokens


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, kind=kinds)
def test_encode_properties(labels, kind):
    vocab = VOCABS[kind]
    codec = LabelCodec(vocab)
    encoded = codec.encode(labels)
    seqs, lengths = encoded.sequences, encoded.lengths
    assert seqs.dtype == np.int64 and lengths.dtype == np.int64
    assert seqs.shape == (labels.size, (lengths.max() if labels.size else 0) + 2)
    rows = np.arange(labels.size)
    assert np.all(seqs[:, 0] == SOS)
    assert np.all(seqs[rows, lengths + 1] == EOS)
    positions = np.arange(seqs.shape[1])
    after_eos = positions[None, :] > (lengths + 1)[:, None]
    assert np.all(seqs[after_eos] == PAD)
    body = (positions[None, :] >= 1) & (positions[None, :] <= lengths[:, None])
    assert np.all(seqs[body] >= N_SPECIAL)
    values = vocab.token_values()[seqs]
    # Values never increase along a row's value tokens.
    assert np.all(np.where(body[:, 1:] & body[:, :-1], values[:, 1:] <= values[:, :-1], True))
    scaled = vocab.scale(labels)
    np.testing.assert_array_equal(values.sum(axis=1), scaled)  # exact: the vocabulary has 1
    for label, row, length in zip(scaled[:5], seqs[:5], lengths[:5]):
        assert vocab.token_values()[row[1 : length + 1]].tolist() == greedy_reference(label, vocab.values)


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, kind=kinds)
def test_decode_round_trip_and_error_bound(labels, kind):
    vocab = VOCABS[kind]
    codec = LabelCodec(vocab)
    decoded = codec.decode(codec.encode(labels).sequences)
    np.testing.assert_array_equal(decoded, vocab.scale(labels) / vocab.label_scale)
    # The only loss is truncation to whole scaled units (scaling forgives float noise of 1e-12).
    assert np.all(labels - decoded >= -1e-12 * labels)
    assert np.all(labels - decoded < 1 / vocab.label_scale)
    big = labels >= 1000 / vocab.label_scale
    assert np.all(np.abs(decoded[big] - labels[big]) <= 1e-3 * labels[big])


@settings(max_examples=30, deadline=None)
@given(labels=labels_strategy, kind=kinds)
def test_token_sequences_agree_with_encode(labels, kind):
    codec = LabelCodec(VOCABS[kind])
    ids, lengths = codec.token_sequences(labels)
    encoded = codec.encode(labels)
    np.testing.assert_array_equal(lengths, encoded.lengths)
    np.testing.assert_array_equal((ids != PAD).sum(axis=1), lengths)
    np.testing.assert_array_equal(ids, encoded.sequences[:, 1 : ids.shape[1] + 1] * (ids != PAD))


def test_lookup_table_and_binary_search_agree():
    labels = np.r_[TRAIN, [0.0, 1e3, 1234.567]]  # includes labels far past the training max
    for vocab in VOCABS.values():
        table = LabelCodec(vocab).encode(labels)
        search = LabelCodec(vocab, table_limit=1).encode(labels)
        np.testing.assert_array_equal(table.sequences, search.sequences)


def test_labels_that_scale_to_zero_are_empty():
    codec = LabelCodec(VOCABS["dynamic_quantile"])
    encoded = codec.encode(np.array([0.0, 0.0004]), max_len=3)
    np.testing.assert_array_equal(encoded.sequences, [[SOS, EOS, PAD, PAD, PAD]] * 2)
    np.testing.assert_array_equal(encoded.lengths, [0, 0])
    np.testing.assert_array_equal(codec.decode(encoded.sequences), [0.0, 0.0])


def test_max_len_pads_and_overflow_names_count():
    codec = LabelCodec(VOCABS["binary"])
    labels = np.array([0.001, 0.003, 0.007])  # 1, 2 and 3 binary tokens
    encoded = codec.encode(labels, max_len=5)
    assert isinstance(encoded, EncodedLabels)
    assert encoded.sequences.shape == (3, 7)
    with pytest.raises(ValueError, match=r"2 labels need more than max_len=1 .*longest needs 3"):
        codec.encode(labels, max_len=1)


def test_empty_batch():
    codec = LabelCodec(VOCABS["manual"])
    encoded = codec.encode(np.array([]), max_len=4)
    assert encoded.sequences.shape == (0, 6)
    assert codec.decode(encoded.sequences).shape == (0,)


def test_decode_stops_at_eos_and_ignores_specials():
    vocab = Vocabulary(values=np.array([100, 10, 1]), kind="manual", label_scale=1000)
    codec = LabelCodec(vocab)
    ids = np.array(
        [
            [SOS, 3, 4, EOS, 3, 3],  # after <eos> ignored
            [SOS, 4, PAD, 5, 5, PAD],  # no <eos>: whole row
            [EOS, 3, 3, 3, 3, 3],  # <eos> first: 0
            [3, 3, SOS, 5, EOS, PAD],  # generated rows may lack <sos>
        ]
    )
    np.testing.assert_allclose(codec.decode(ids), [0.110, 0.012, 0.0, 0.201])


def test_decode_rejects_bad_ids():
    codec = LabelCodec(VOCABS["manual"])
    with pytest.raises(ValueError, match="must lie in"):
        codec.decode(np.array([[SOS, 999]]))
    with pytest.raises(ValueError, match="2-D integer"):
        codec.decode(np.array([SOS, 3, EOS]))


def test_vocabulary_without_unit_token_truncates_remainder():
    vocab = Vocabulary(values=np.array([100, 10]), kind="manual", label_scale=1000)
    codec = LabelCodec(vocab)
    decoded = codec.decode(codec.encode(np.array([0.125, 0.005])).sequences)
    np.testing.assert_allclose(decoded, [0.120, 0.0])


def test_length_stats_and_max_decode_len():
    codec = LabelCodec(VOCABS["binary"])
    labels = np.array([0.0, 0.001, 0.003, 0.007, 0.007])  # lengths 0, 1, 2, 3, 3
    stats = codec.length_stats(labels)
    assert stats["min"] == 0 and stats["max"] == 3 and stats["n"] == 5
    assert stats["mean"] == pytest.approx(9 / 5)
    assert stats["p50"] == 2
    assert stats["histogram"] == {0: 1, 1: 1, 2: 1, 3: 2}
    assert codec.max_decode_len(labels) == 3
    assert codec.max_decode_len(labels, coverage=0.6) == 2
    assert codec.max_decode_len(np.zeros(4)) == 1
    with pytest.raises(ValueError, match="coverage"):
        codec.max_decode_len(labels, coverage=0.0)


def test_encode_validates_labels():
    codec = LabelCodec(VOCABS["manual"])
    with pytest.raises(ValueError, match="non-negative"):
        codec.encode(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite"):
        codec.encode(np.array([np.nan]))
