"""The character n-gram TF-IDF baseline: Keras equals scikit-learn, loads without graftkit, every task, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from graftkit.bases.tfidf import OOV, char_ngrams, fit_tfidf, probe_tfidf
from graftkit.errors import GraftError

WORDS = ["cash", "prize", "WIN", "hello", "mum", "see", "you", "later", "FREE", "call", "now", "txt", "ok", "lol",
         "Über", "naïve", "café"]
# Held-out texts of every awkward kind: unseen characters and n-grams, emoji, empty and one-character texts,
# runs of whitespace (kept by Keras, collapsed by scikit-learn's own "char" analyzer), non-ASCII capitals
# (lowercased by Python, not by Keras' "lower"), NUL characters and a very long text.
AWKWARD = ["WIN cash now", "", "x", "中文字符而已", "😀😀 FREE call", "👩‍👩‍👧 ok", "tab\tand\n\nnewlines   and  spaces",
           "ÜBER NAÏVE CAFÉ", "\x00cash\x00 prize\x00", "see you " * 5000, "zzzz qqqq cash", "  ", "Ça va? ¿Qué?"]


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(1, 9))) for _ in range(n)]


def classes_of(texts) -> np.ndarray:
    return np.array([int("cash" in t or "WIN" in t) + int("FREE" in t and "call" in t) for t in texts])


@pytest.fixture(scope="module")
def single():
    texts = corpus(160, seed=0)
    return fit_tfidf(texts, classes_of(texts), num_classes=3)


@pytest.fixture(scope="module")
def held_out() -> list[str]:
    return corpus(60, seed=1) + AWKWARD


def test_keras_outputs_equal_scikit_learns_on_held_out_texts(single, held_out):
    keras_probabilities = single.predict(held_out)
    svm, calibrator = single.estimators
    x = single.vectorizer.transform(held_out)
    sklearn_probabilities = calibrator.predict_proba(svm.decision_function(x))
    assert keras_probabilities.shape == (len(held_out), 3)
    assert np.abs(keras_probabilities - sklearn_probabilities).max() < 1e-5
    assert np.allclose(keras_probabilities.sum(axis=1), 1, atol=1e-6)
    # The held-out texts must reach both sides' edge cases: texts with no known n-gram and texts mixing
    # known and unseen n-grams (where an out-of-vocabulary idf other than 0 would change the norm).
    known = np.asarray((x > 0).sum(axis=1)).ravel()
    grams = [len(set(char_ngrams(t))) for t in held_out]
    assert (known == 0).sum() >= 3 and any(0 < k < g for k, g in zip(known, grams))


def test_a_text_with_no_known_ngram_gets_the_bias_alone(single):
    logits = single.bias - single.bias.max()
    expected = np.exp(logits) / np.exp(logits).sum()
    for text in ["", "x", "中文字符而已"]:
        assert np.abs(single.predict([text])[0] - expected).max() < 1e-6


def test_the_vocabulary_is_keras_joined_with_the_oov_token_first(single):
    layer = single.model.get_layer("char_ngram_tfidf")
    vocabulary = layer.get_vocabulary()
    assert vocabulary[0] == OOV and len(vocabulary) == single.vocabulary_size + 1
    assert set(vocabulary[1:]) == {" ".join(term) for term in single.vectorizer.vocabulary_}
    assert float(np.asarray(layer._lookup_layer.idf_weights)[0]) == 0.0


def test_nul_characters_in_training_texts_stay_out_of_the_vocabulary():
    texts = ["ab\x00", "ab\x00 x", "cd", "cd y"] * 3  # NumPy would cut "b \x00" to "b " in Keras' vocabulary
    fit = fit_tfidf(texts, [0, 0, 1, 1] * 3)
    assert not any("\x00" in term for term in fit.vectorizer.vocabulary_)
    assert np.abs(fit.predict(texts) - fit.reference(texts)).max() < 1e-5


def test_the_analyzer_is_scikit_learns_char_analyzer_on_lowercase_single_spaced_text():
    from sklearn.feature_extraction.text import TfidfVectorizer

    reference = TfidfVectorizer(analyzer="char", ngram_range=(2, 5)).build_analyzer()
    text = "Free entry in 2 a wkly comp to win FA Cup final tkts!"
    assert sorted(char_ngrams(text)) == sorted(reference(text))
    assert char_ngrams("A  É\n") == ["a ", "  ", " É", "É\n", "a  ", "  É", " É\n", "a  É", "  É\n", "a  É\n"]


def test_the_model_loads_and_serves_strings_without_graftkit(single, held_out, tmp_path):
    single.model.save(tmp_path / "model.keras")
    single.model.export(str(tmp_path / "savedmodel"), verbose=False)
    (tmp_path / "texts.json").write_text(json.dumps(held_out))
    np.save(tmp_path / "expected.npy", single.predict(held_out))
    code = textwrap.dedent("""
        import json, os, sys
        sys.modules["graftkit"] = None  # any import of graftkit fails
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import keras, numpy as np, tensorflow as tf
        texts = json.load(open("texts.json", encoding="utf-8"))
        expected = np.load("expected.npy")
        model = keras.models.load_model("model.keras")
        loaded = model.predict_on_batch(np.array(texts, object))
        export = tf.saved_model.load("savedmodel")  # held: a temporary would free the variables serve() uses
        served = export.serve(tf.constant(texts)).numpy()
        print(json.dumps([float(np.abs(loaded - expected).max()), float(np.abs(served - expected).max())]))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded, served = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded < 1e-6 and served < 1e-6


def test_the_model_is_built_in_layers_only(single):
    assert all(type(layer).__module__.startswith("keras.") for layer in single.model.layers)
    assert single.model.input.dtype == "string" and tuple(single.model.input.shape) == (None,)


def test_class_weight_moves_probability_to_the_weighted_class():
    texts = corpus(120, seed=2)
    labels = classes_of(texts).clip(0, 1)
    plain = fit_tfidf(texts, labels).predict(texts)[:, 1].mean()
    weighted = fit_tfidf(texts, labels, class_weight={1: 10.0})
    assert weighted.predict(texts)[:, 1].mean() > plain + 0.02
    assert np.abs(weighted.predict(AWKWARD) - weighted.reference(AWKWARD)).max() < 1e-5  # the two-class map


def test_multilabel_gives_a_sigmoid_per_label(held_out):
    texts = corpus(150, seed=3)
    labels = np.array([["cash" in t, "mum" in t, False] for t in texts], int)
    fit = fit_tfidf(texts, labels, task="multilabel", num_classes=3)
    out = fit.predict(held_out)
    assert out.shape == (len(held_out), 3)
    assert np.abs(out - fit.reference(held_out)).max() < 1e-5
    cash = fit.predict(["cash cash", "mum you", "see you"])
    assert cash[0, 0] > 0.8 and cash[1, 0] < 0.2 and cash[1, 1] > 0.8 and cash[2, 1] < 0.2
    assert fit.estimators[2] is None and np.allclose(out[:, 2], 0.5 / 151, rtol=1e-4)  # never seen: its frequency


def test_regression_outputs_the_ridge_prediction(held_out):
    from sklearn.metrics import r2_score

    texts = corpus(150, seed=4)
    target = np.array([3.0 * t.count("cash") - 2.0 * t.count("mum") + 10.0 for t in texts])
    fit = fit_tfidf(texts, target, task="regression")
    out = fit.predict(held_out)
    assert out.shape == (len(held_out), 1)
    assert np.abs(out[:, 0] - fit.estimators.predict(fit.vectorizer.transform(held_out))).max() < 1e-4
    new = corpus(100, seed=6)
    assert r2_score([3.0 * t.count("cash") - 2.0 * t.count("mum") + 10.0 for t in new], fit.predict(new)[:, 0]) > 0.7


def test_probe_scores_each_task_as_the_image_probe_does():
    texts = corpus(100, seed=5)
    single = probe_tfidf(texts, classes_of(texts).clip(0, 1), folds=3)
    assert single["metric"] == "accuracy" and single["folds"] == 3 and single["score"] > 0.9
    assert single["parameters"] == (single["vocabulary_size"] + 2) * 2  # Dense: OOV row, n-gram rows, bias
    labels = np.array([["cash" in t, "mum" in t] for t in texts], int)
    assert probe_tfidf(texts, labels, task="multilabel")["metric"] == "mAP"
    regression = probe_tfidf(texts, [t.count("cash") for t in texts], task="regression", folds=3)
    assert regression["metric"] == "R²" and regression["score"] > 0.5 and regression["seconds"] > 0


@pytest.mark.parametrize("texts, labels, options, message", [
    ([], [], {}, "no texts"),
    (["", "a", " "], [0, 1, 0], {}, "all 3 texts are empty"),
    (["hello there", "hi you"], [1, 1], {}, "every text has class 1"),
    (["hello there", "hi you"], [0, 1, 0], {}, "2 texts but 3 labels"),
    (["hello there", None], [0, 1], {}, "text 1 is not a string"),
    ("hello there", [0], {}, "expected a list of texts"),
    (["hello there", "hi you"], [0, 2], {"num_classes": 3}, "class 1 of 3 has no training text"),
    (["hello there", "hi you"], [0, 1], {"task": "ranking"}, "unknown task"),
    (["hello there", "hi you"], [0, 0.5], {}, "class index"),
    (["hello there", "hi you"], [[0, 2], [1, 0]], {"task": "multilabel"}, "0/1 matrix"),
    (["hello there", "hi you"], [1.0, np.nan], {"task": "regression"}, "missing"),
])
def test_bad_input_is_one_line(texts, labels, options, message):
    with pytest.raises(GraftError, match=message) as caught:
        fit_tfidf(texts, labels, **options)
    assert "\n" not in str(caught.value)


def test_probe_refuses_a_class_of_one_text():
    with pytest.raises(GraftError, match="a class has a single text"):
        probe_tfidf(["hello there", "hi you", "hey"], [0, 0, 1])


@pytest.mark.integration
def test_sms_spam_matches_the_issues_baseline(shared):
    from sklearn.metrics import accuracy_score, f1_score, log_loss
    from sklearn.model_selection import train_test_split

    lines = (shared / "data" / "sms_spam" / "SMSSpamCollection.tsv").read_text(encoding="utf-8").splitlines()[1:]
    names, texts = zip(*(line.split("\t", 1) for line in lines))
    labels = np.array([name == "spam" for name in names], int)
    train, test, y_train, y_test = train_test_split(list(texts), labels, test_size=0.2, stratify=labels,
                                                    random_state=0)
    fit = fit_tfidf(train, y_train, num_classes=2)
    probabilities = fit.predict(test)
    predicted = probabilities.argmax(axis=1)
    # Measured: accuracy 0.9901, spam F1 0.962, log loss 0.027, 70,541 n-grams, 3 s on 2 busy cores.
    assert accuracy_score(y_test, predicted) >= 0.985
    assert f1_score(y_test, predicted) >= 0.95
    assert log_loss(y_test, probabilities) <= 0.035  # a logistic regression (C=30) on the same features: 0.042
    assert 50_000 < fit.vocabulary_size <= 100_000 and fit.seconds < 60
    assert np.abs(probabilities - fit.reference(test)).max() < 1e-5
