"""Batches of like-length token ids: padding, the sortish order, and outputs back in the texts' order."""

import numpy as np

from graftkit.data.tokens import choose_max_length, length_batches, pad_batch, token_dataset, token_outputs


def test_batches_group_like_lengths_cover_every_text_once_and_change_order_every_epoch():
    lengths = np.random.default_rng(0).integers(1, 200, size=3000)
    first = length_batches(lengths, 32, shuffle=True, seed=1, epoch=0)
    second = length_batches(lengths, 32, shuffle=True, seed=1, epoch=1)
    assert sorted(np.concatenate(first).tolist()) == list(range(3000))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    padded = sum(len(b) * lengths[b].max() for b in first)
    assert padded < 0.6 * len(first) * 32 * lengths.max()  # far less padding than every batch at the longest
    again = length_batches(lengths, 32, shuffle=True, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_a_dataset_draws_a_new_order_each_pass_and_pads_with_zero():
    tokens = [np.arange(1, n + 1, dtype=np.int32) for n in range(1, 41)]
    data = token_dataset(tokens, np.arange(40) % 2, batch_size=4, shuffle=True, seed=0)
    passes = [[(x.numpy() > 0).sum(axis=1).tolist() for x, _ in data] for _ in range(2)]
    assert passes[0] != passes[1]
    for x, _ in data:
        x = x.numpy()
        assert (x > 0).sum(axis=1).max() == x.shape[1]  # padded to its own longest text, with 0
    assert pad_batch(tokens, [0, 2]).tolist() == [[1, 0, 0], [1, 2, 3]]


def test_outputs_come_back_in_the_texts_order():
    import keras

    model = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(50, 3, mask_zero=True),
                              keras.layers.GlobalAveragePooling1D()])
    tokens = [np.array([i % 49 + 1] * (i % 7 + 1), np.int32) for i in range(30)]
    together = token_outputs(model, tokens, batch_size=4)
    alone = np.concatenate([token_outputs(model, [ids]) for ids in tokens])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    assert choose_max_length(np.full(500, 30), 512) == 30 and choose_max_length([5000], 256) == 256
