"""The character n-gram TF-IDF baseline for text (``graft train --base tfidf``), shipped as plain Keras.

A linear model on character 2-5-gram TF-IDF features is the baseline a transformer has to beat: on
SMS spam it reaches 0.99 accuracy in seconds on a CPU. :func:`fit_tfidf` fits it in scikit-learn and
rebuilds it from built-in Keras layers that take raw strings::

    string -> TextVectorization(lower, character 2-5-grams, tf_idf) -> UnitNormalization -> Dense -> activation

so ``model.keras`` loads with ``keras.models.load_model`` without graftkit and a SavedModel export
serves strings. The two sides agree to float32 rounding because the scikit-learn side is made to see
exactly what Keras sees:

- Keras' ``standardize="lower"`` lowercases ASCII letters only (``tf.strings.lower`` without an
  encoding) and ``split="character"`` keeps every whitespace character, so the vectorizer's analyzer
  (:func:`char_ngrams`) lowercases A-Z only and does not collapse runs of whitespace, as
  scikit-learn's own ``"char"`` analyzer would. Measured on SMS spam both analyzers score the same.
- Keras joins a character n-gram's characters with spaces ("abc" is "a b c"), so each term is
  rewritten that way; the join is one-to-one because each n-gram length gives its own string length.
- ``tf_idf`` mode reserves index 0 for out-of-vocabulary n-grams. The vocabulary is passed with
  that token first and an idf weight of 0, so unseen n-grams add nothing to the vector or its norm,
  as in scikit-learn, where they are dropped. A text with no known n-gram (empty, or unseen
  characters only) is a zero vector; both sides then output the bias alone.

``"char_wb"`` (n-grams inside words, padded with spaces) scored the same on SMS spam but has no
built-in Keras equivalent, so it is not used. The linear model is a linear SVM with Platt-scaled
probabilities for classes and labels, and a ridge regression for a number. On SMS spam (80/20,
seed 0) the calibrated SVM scored spam F1 0.962 with a log loss of 0.027; a logistic regression
reached that F1 only at C=1000, with a log loss of 0.049 (0.042 and F1 0.958 at C=30).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from graftkit.errors import GraftError

TASKS = ("single", "multilabel", "regression")
NGRAMS = (2, 3, 4, 5)
# An n-gram must occur in this many training texts (on SMS spam 1, 2 and 3 scored within noise; 2 halves
# the vocabulary), and the vocabulary keeps at most the most frequent MAX_NGRAMS (the model file holds
# the vocabulary and a Dense kernel of MAX_NGRAMS rows; on SMS spam 20,000 scored as well as 70,000).
MIN_TEXTS = 2
MAX_NGRAMS = 100_000
# The linear SVM's C (0.3, 1 and 3 within noise on SMS spam), the calibrator's (Platt scaling: a
# logistic regression on the SVM's cross-validated decision values), the folds it is fitted on, and
# the ridge regression's penalty on the unit-length TF-IDF rows.
SVM_C = 1.0
CALIBRATION_C = 100.0
CALIBRATION_FOLDS = 5
RIDGE_ALPHA = 1.0
# Keras' out-of-vocabulary token in tf_idf mode: index 0 of the vocabulary.
OOV = "[UNK]"
PROBES = {"single": "accuracy", "multilabel": "mAP", "regression": "R²"}
BATCH = 256
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class TfidfFit:
    """A fitted character n-gram TF-IDF model, as Keras and as the scikit-learn objects it came from.

    Attributes:
        model: the plain Keras model: raw strings in (``shape=()``, ``dtype="string"``); class
            probabilities (softmax), label probabilities (sigmoid) or the number (shape ``(n, 1)``) out.
        task: ``"single"``, ``"multilabel"`` or ``"regression"``.
        vocabulary_size: character n-grams in the vocabulary.
        seconds: wall time of the fit, Keras model included.
        description: one line saying what was fitted, with its numbers.
        vectorizer: the fitted scikit-learn ``TfidfVectorizer`` (its terms as scikit-learn writes them).
        estimators: the fitted scikit-learn models: ``(svm, calibrator)`` for single, a list of them (or
            ``None`` for a label that is constant in training) per label for multilabel, the ``Ridge``.
        weights, bias: the linear map from the unit-length TF-IDF vector to the model's logits (or
            number) that the Keras ``Dense`` layer holds, in float64: shapes ``(units, vocabulary_size)``
            and ``(units,)``.

    Example:
        >>> fit = fit_tfidf(["good day", "bad day", "good morning", "bad night"] * 3, [1, 0, 1, 0] * 3)
        >>> fit.predict(["good", "very bad"]).argmax(axis=1).tolist()
        [1, 0]
    """

    model: object
    task: str
    vocabulary_size: int
    seconds: float
    description: str
    vectorizer: object = field(repr=False)
    estimators: object = field(repr=False)
    weights: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)

    def predict(self, texts, batch_size: int = BATCH) -> np.ndarray:
        """The Keras model's outputs for raw strings, in batches: shape ``(len(texts), units)``.

        Example:
            >>> fit = fit_tfidf(["spam spam", "ham", "spam!", "ham ham"] * 3, [1, 0, 1, 0] * 3)
            >>> fit.predict(["", "spam"]).shape
            (2, 2)
        """
        texts = _strings(texts, "text to predict")
        units = int(self.bias.shape[0])
        if not texts:
            return np.zeros((0, units), np.float32)
        return np.concatenate([np.asarray(self.model.predict_on_batch(np.array(texts[i:i + batch_size], object)))
                               for i in range(0, len(texts), batch_size)]).reshape(len(texts), units)

    def reference(self, texts) -> np.ndarray:
        """The same outputs computed by the scikit-learn objects themselves, in float64 (to check the model).

        Example:
            >>> fit = fit_tfidf(["spam spam", "ham", "spam!", "ham ham"] * 3, [1, 0, 1, 0] * 3)
            >>> bool(np.abs(fit.reference(["spam?"]) - fit.predict(["spam?"])).max() < 1e-5)
            True
        """
        x = self.vectorizer.transform(_strings(texts, "text"))
        if self.task == "single":
            svm, calibrator = self.estimators
            decision = svm.decision_function(x)
            return calibrator.predict_proba(decision.reshape(x.shape[0], -1))
        if self.task == "multilabel":
            columns = []
            for j, fitted in enumerate(self.estimators):
                if fitted is None:
                    columns.append(np.full(x.shape[0], 1 / (1 + np.exp(-self.bias[j]))))
                else:
                    svm, calibrator = fitted
                    columns.append(calibrator.predict_proba(svm.decision_function(x).reshape(-1, 1))[:, 1])
            return np.stack(columns, axis=1)
        return self.estimators.predict(x).reshape(-1, 1)


def char_ngrams(text: str) -> list[str]:
    """The character 2-5-grams of ``text`` as Keras' ``TextVectorization`` makes them, before joining.

    A-Z are lowercased (``standardize="lower"`` lowercases ASCII only), whitespace is kept as it is
    (``split="character"``), and an n-gram holding a NUL character is left out (NumPy string arrays,
    through which Keras passes its vocabulary, drop trailing NULs; left out here, it is out of the
    vocabulary there too, and adds nothing on either side).

    Example:
        >>> char_ngrams("AbC")
        ['ab', 'bc', 'abc']
    """
    text = text.translate(_ASCII_LOWER)
    n = len(text)
    grams = [text[i:i + k] for k in NGRAMS for i in range(n - k + 1)]
    if "\x00" in text:
        grams = [g for g in grams if "\x00" not in g]
    return grams


def fit_tfidf(texts, labels, *, task: str = "single", num_classes: int | None = None, class_weight=None,
              seed: int = 0) -> TfidfFit:
    """Fit a character 2-5-gram TF-IDF linear model and rebuild it as a plain Keras model on raw strings.

    Args:
        texts: the training texts (strings; an empty one is allowed and counts as a zero vector).
        labels: class indices for ``single``; a 0/1 matrix, one column per label, for ``multilabel``;
            numbers for ``regression``.
        task: ``"single"`` (softmax over the classes), ``"multilabel"`` (a sigmoid per label, one-vs-rest)
            or ``"regression"`` (a ridge regression, linear output).
        num_classes: the number of classes (default: the largest index + 1) or labels (default: the
            matrix's columns); every class needs a training text. Unused for regression.
        class_weight: per-class weights ``{index: weight}`` for ``single`` (the SVM's loss and its
            calibration); ignored by the other tasks.
        seed: seed of the calibration folds and of the SVM's solver.

    Returns:
        A :class:`TfidfFit`.

    Raises:
        GraftError: no texts, no text of two or more characters, a single class, or labels that do not fit the task.

    Example:
        >>> texts = ["win cash now", "call me later", "free prize", "see you soon"] * 3
        >>> fit = fit_tfidf(texts, [1, 0, 1, 0] * 3, num_classes=2)
        >>> fit.predict(["WIN A FREE PRIZE", "see you at home"]).argmax(axis=1).tolist()
        [1, 0]
        >>> fit_tfidf(texts, [0.5, 1.0, 1.5, 2.0] * 3, task="regression").predict(["free"]).shape
        (1, 1)
    """
    start = time.perf_counter()
    texts, y, units = _checked(texts, labels, task, num_classes)
    vectorizer, x = _vectorize(texts)
    if task == "single":
        estimators, weights, bias, note = _fit_classes(x, y, units, class_weight, seed)
        model_text = (f"{'linear SVM' if units == 2 else 'one-vs-rest linear SVMs'} C={SVM_C:g}, "
                      f"Platt-scaled probabilities{note}")
    elif task == "multilabel":
        estimators, weights, bias = _fit_labels(x, y, seed)
        model_text = f"one-vs-rest linear SVMs C={SVM_C:g}, Platt-scaled probabilities"
    else:
        estimators, weights, bias = _fit_ridge(x, y)
        model_text = f"ridge regression alpha={RIDGE_ALPHA:g}"
    vocabulary = _keras_terms(vectorizer)
    model = build_model(vocabulary, vectorizer.idf_, weights, bias, task)
    min_df = vectorizer.min_df
    description = (f"character 2-5-gram TF-IDF, {len(vocabulary):,} n-grams"
                   + (f" in {min_df} or more texts" if min_df > 1 else "") + f", {model_text}")
    return TfidfFit(model=model, task=task, vocabulary_size=len(vocabulary), seconds=time.perf_counter() - start,
                    description=description, vectorizer=vectorizer, estimators=estimators, weights=weights,
                    bias=bias)


def build_model(vocabulary, idf, weights, bias, task: str = "single"):
    """The Keras model on raw strings: character n-gram TF-IDF, L2 row norm, Dense, activation.

    Args:
        vocabulary: the n-grams in Keras' form (characters joined by spaces), one per TF-IDF column.
        idf: their idf weights (scikit-learn's ``idf_``).
        weights, bias: the linear map on the unit-length vector, shapes ``(units, len(vocabulary))``, ``(units,)``.
        task: the output's activation: softmax (``single``), sigmoid (``multilabel``) or none (``regression``).

    Example:
        >>> model = build_model(["a b", "b c"], [1.0, 2.0], np.array([[1.0, -1.0]]), np.zeros(1), "regression")
        >>> round(float(model.predict_on_batch(np.array(["ABC", "xyz"], object))[0, 0]), 4)
        -0.4472
    """
    import keras

    weights = np.asarray(weights, np.float64)
    units = weights.shape[0]
    vectorize = keras.layers.TextVectorization(
        standardize="lower", split="character", ngrams=NGRAMS, output_mode="tf_idf",
        vocabulary=[OOV, *vocabulary], idf_weights=np.concatenate([[0.0], np.asarray(idf, np.float64)]),
        name="char_ngram_tfidf")
    dense = keras.layers.Dense(units, activation={"single": "softmax", "multilabel": "sigmoid"}.get(task),
                               name="predictions")
    text = keras.Input(shape=(), dtype="string", name="text")
    outputs = dense(keras.layers.UnitNormalization(name="l2_norm")(vectorize(text)))
    kernel = np.concatenate([np.zeros((1, units)), weights.T]).astype(np.float32)
    dense.set_weights([kernel, np.asarray(bias, np.float32)])
    return keras.Model(text, outputs, name="tfidf")


def probe_tfidf(texts, labels, *, task: str = "single", folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated score of the TF-IDF baseline, for ``graft advise`` to set beside the encoders' probes.

    The score is the one :func:`graftkit.advice.linear_probe` gives an image base: accuracy
    (stratified folds) for ``single``, mean average precision over the labels for ``multilabel``,
    R² for ``regression``. The model of each fold is the one :func:`fit_tfidf` fits, scored through
    scikit-learn (whose outputs the Keras model equals).

    Args:
        texts, labels, task: as for :func:`fit_tfidf`.
        folds: at most this many folds (fewer when the smallest class has fewer texts; at least 2).
        seed: seed of the folds.

    Returns:
        ``{"base": "tfidf", "metric", "score", "spread", "folds", "seconds", "texts_per_second",
        "vocabulary_size", "parameters", "description"}``: the mean and standard deviation of the
        score over the folds, the probe's wall time, the scoring speed of the held-out texts
        (vectorizing and the linear model, in scikit-learn), the mean vocabulary size of the folds
        and the parameters of a Keras model of that size (its Dense layer, as ``count_params`` counts).

    Example:
        >>> probe = probe_tfidf(["win cash", "hi mum", "free cash", "hi dad"] * 5, [1, 0, 1, 0] * 5)
        >>> probe["metric"], probe["score"], probe["folds"]
        ('accuracy', 1.0, 5)
    """
    from sklearn.metrics import accuracy_score, average_precision_score, r2_score
    from sklearn.model_selection import KFold, StratifiedKFold

    start = time.perf_counter()
    texts, y, units = _checked(texts, labels, task, None)
    if task == "single":
        folds = min(folds, int(np.bincount(y).min()))
        if folds < 2:
            raise GraftError("a class has a single text: cross-validation needs at least 2 texts of each class")
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        folds = min(folds, len(y) // 2)
        if folds < 2:
            raise GraftError(f"{len(y)} text{'s' * (len(y) != 1)}: cross-validation needs at least 4")
        splits = KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)))
    scores, sizes, scored, scoring_seconds = [], [], 0, 0.0
    for train, held in splits:
        train_texts = [texts[i] for i in train]
        held_texts = [texts[i] for i in held]
        if not any(len(t) >= 2 for t in train_texts):
            raise GraftError("a fold's training texts are all empty: too few texts with two or more characters")
        vectorizer, x = _vectorize(train_texts)
        sizes.append(len(vectorizer.vocabulary_))
        if task == "single":
            present = np.unique(y[train])
            _, weights, bias, _ = _fit_classes(x, np.searchsorted(present, y[train]), len(present), None, seed)
        elif task == "multilabel":
            _, weights, bias = _fit_labels(x, y[train], seed)
        else:
            _, weights, bias = _fit_ridge(x, y[train])
        tick = time.perf_counter()
        logits = np.asarray(vectorizer.transform(held_texts) @ weights.T) + bias
        scoring_seconds += time.perf_counter() - tick
        scored += len(held)
        if task == "single":
            scores.append(accuracy_score(y[held], present[logits.argmax(axis=1)]))
        elif task == "multilabel":
            known = [j for j in range(units) if 0 < y[held, j].sum() < len(held)]
            scores.append(average_precision_score(y[held][:, known], logits[:, known], average="macro")
                          if known else np.nan)
        else:
            scores.append(r2_score(y[held], logits[:, 0]))
    scores = np.asarray(scores, np.float64)
    return {"base": "tfidf", "metric": PROBES[task], "score": float(np.nanmean(scores)),
            "spread": float(np.nanstd(scores)), "folds": folds, "seconds": time.perf_counter() - start,
            "texts_per_second": scored / max(scoring_seconds, 1e-9), "vocabulary_size": int(np.mean(sizes)),
            "parameters": (int(np.mean(sizes)) + 2) * units,
            "description": f"{folds}-fold cross-validated character 2-5-gram TF-IDF + "
                           + {"single": "linear SVM", "multilabel": "one-vs-rest linear SVMs",
                              "regression": "ridge regression"}[task]}


def _strings(texts, what: str) -> list[str]:
    """``texts`` as a list of str; anything else in it (None, a number: a missing cell) is a one-line error."""
    if isinstance(texts, str):
        raise GraftError(f"expected a list of texts, got one string ({texts[:40]!r}): wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise GraftError(f"{what} {i} is not a string but {type(text).__name__} {text!r:.40}: "
                             "fill in or drop the missing texts")
    return out


def _checked(texts, labels, task: str, num_classes: int | None) -> tuple[list[str], np.ndarray, int]:
    """The texts as strings, the labels as the task needs them, and the model's output units."""
    if task not in TASKS:
        raise GraftError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    texts = _strings(texts, "text")
    if not texts:
        raise GraftError("no texts to learn from: the training data is empty")
    if not any(len(t) >= 2 for t in texts):
        raise GraftError(f"all {len(texts)} texts are empty (or a single character): there are no character "
                         "n-grams to learn from")
    try:
        y = np.asarray(labels, np.float64)
    except (TypeError, ValueError):
        raise GraftError(f"the labels are not numbers: {task} needs "
                         + {"single": "class indices", "multilabel": "a 0/1 matrix",
                            "regression": "numbers"}[task]) from None
    if len(y) != len(texts):
        raise GraftError(f"{len(texts)} texts but {len(y)} labels: give one label per text")
    if not np.isfinite(y).all():
        raise GraftError("a label is missing (NaN) or infinite: fill in or drop those texts")
    if task == "single":
        if y.ndim != 1 or (y != np.round(y)).any() or (y < 0).any():
            raise GraftError("single-label classes must be one class index (0, 1, ...) per text")
        y = y.astype(np.int64)
        units = int(num_classes if num_classes is not None else y.max() + 1)
        present = np.unique(y)
        if len(present) < 2:
            raise GraftError(f"every text has class {present[0]}: a classifier needs texts of at least two classes")
        if y.max() >= units:
            raise GraftError(f"class index {y.max()} is out of range for {units} classes")
        if len(present) < units:
            missing = sorted(set(range(units)) - set(present.tolist()))
            raise GraftError(f"class{'es' * (len(missing) > 1)} {', '.join(map(str, missing))} of {units} "
                             "ha" + ("ve" if len(missing) > 1 else "s") + " no training text: add texts of "
                             "every class")
        return texts, y, units
    if task == "multilabel":
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise GraftError("multi-label labels must be a 0/1 matrix, one row per text and one column per label")
        if num_classes is not None and num_classes != y.shape[1]:
            raise GraftError(f"{y.shape[1]} label columns but num_classes={num_classes}")
        return texts, y.astype(np.int64), int(y.shape[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise GraftError("regression targets must be one number per text")
    return texts, y, 1


def _vectorize(texts: list[str]):
    """The fitted TF-IDF vectorizer and the training matrix (unit-length rows)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def vectorizer(min_df):
        return TfidfVectorizer(analyzer=char_ngrams, lowercase=False, min_df=min_df, max_features=MAX_NGRAMS)

    try:
        fitted = vectorizer(MIN_TEXTS)
        return fitted, fitted.fit_transform(texts)
    except ValueError:  # no n-gram occurs in MIN_TEXTS texts (a tiny corpus): keep every n-gram
        fitted = vectorizer(1)
        return fitted, fitted.fit_transform(texts)


def _keras_terms(vectorizer) -> list[str]:
    """The vectorizer's terms in column order, written as Keras writes an n-gram (characters joined by spaces)."""
    terms = np.empty(len(vectorizer.vocabulary_), object)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = " ".join(term)
    return terms.tolist()


def _svm(seed: int, class_weight=None):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=SVM_C, class_weight=class_weight, random_state=seed, max_iter=10_000)


def _calibrated(x, y, seed: int, class_weight=None) -> tuple:
    """A linear SVM and its Platt scaling: a logistic regression on its decision values, out of fold when
    each class has two or more texts (on the training texts themselves otherwise: then overconfident)."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    svm = _svm(seed, class_weight)
    folds = min(CALIBRATION_FOLDS, int(np.bincount(y).min()))
    if folds >= 2:
        decision = cross_val_predict(clone(svm), x, y, method="decision_function",
                                     cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        svm.fit(x, y)
    else:
        decision = svm.fit(x, y).decision_function(x)
    calibrator = LogisticRegression(C=CALIBRATION_C, max_iter=1000, class_weight=class_weight)
    calibrator.fit(decision.reshape(len(y), -1), y)
    return svm, calibrator, folds >= 2


def _fit_classes(x, y, units: int, class_weight, seed: int):
    """Single label: the SVM + calibrator, folded into one linear map to ``units`` logits."""
    if class_weight is not None:
        class_weight = {int(k): float(v) for k, v in dict(class_weight).items() if int(k) < units}
    svm, calibrator, out_of_fold = _calibrated(x, y, seed, class_weight)
    slope, offset = calibrator.coef_, calibrator.intercept_
    if units == 2:  # one decision value d; p(class 1) = sigmoid(a d + b): logits [0, a d + b]
        weights = np.vstack([np.zeros(x.shape[1]), slope[0, 0] * svm.coef_[0]])
        bias = np.array([0.0, slope[0, 0] * svm.intercept_[0] + offset[0]])
    else:  # one decision value a class; softmax over slope @ d + offset
        weights = slope @ svm.coef_
        bias = slope @ svm.intercept_ + offset
    note = "" if out_of_fold else " (calibrated on the training texts: a class has a single text)"
    return (svm, calibrator), weights, bias, note


def _fit_labels(x, y, seed: int):
    """Multi-label: an SVM + calibrator per label; a label constant in training gets its smoothed frequency."""
    estimators, weights, bias = [], np.zeros((y.shape[1], x.shape[1])), np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        positives = int(y[:, j].sum())
        if positives in (0, len(y)):
            estimators.append(None)
            share = (positives + 0.5) / (len(y) + 1)
            bias[j] = np.log(share / (1 - share))
            continue
        svm, calibrator, _ = _calibrated(x, y[:, j], seed)
        estimators.append((svm, calibrator))
        weights[j] = calibrator.coef_[0, 0] * svm.coef_[0]
        bias[j] = calibrator.coef_[0, 0] * svm.intercept_[0] + calibrator.intercept_[0]
    return estimators, weights, bias


def _fit_ridge(x, y):
    from sklearn.linear_model import Ridge

    ridge = Ridge(alpha=RIDGE_ALPHA).fit(x, y)
    return ridge, ridge.coef_.reshape(1, -1), np.atleast_1d(ridge.intercept_).astype(np.float64)
