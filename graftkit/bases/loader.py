"""Load a base: a named ImageNet backbone or a personal model file, cut and ready for a head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graftkit import log
from graftkit.bases import registry
from graftkit.bases import weights as weight_files
from graftkit.bases.preprocess import MODE_HELP
from graftkit.errors import GraftError


@dataclass
class Base:
    """A pre-trained base cut for transfer.

    Attributes:
        model: a Keras model from preprocessed images to features (named ``base``).
        source: the base name or the model file it came from.
        preprocessing: the :class:`~graftkit.bases.preprocess.Preprocess` mode it needs.
        image_size: the square input size it is built for.
        cut: the name of the layer it ends at, as ``--cut`` takes it (a layer inside a nested model
            is named by its own name), so that passing it back gives the same base.
        weights: where its weights came from (a file, ``random``, or the personal model file).
        inference_only: True when it can be used frozen only (SavedModel bases).
        channels: the colour channels it takes: 3 (RGB) or 1 (a grayscale personal model, fed
            grayscale images everywhere).
        preprocessing_why: how ``preprocessing`` was chosen (for the log and ``graft inspect``).
        notes: what a user should know about this base before training on it (one line each).
    """

    model: object
    source: str
    preprocessing: str
    image_size: int
    cut: str
    weights: str
    inference_only: bool = False
    channels: int = 3
    preprocessing_why: str = ""
    notes: tuple = ()

    @property
    def feature_shape(self) -> tuple:
        return tuple(self.model.output.shape[1:])

    def preprocessing_layer(self):
        """The built-in Keras layers mapping RGB pixels 0..255 to this base's input (saved with the model)."""
        from graftkit.bases.preprocess import preprocessing_layer

        return preprocessing_layer(self.preprocessing, channels=int(self.model.inputs[0].shape[-1]))


def is_model_file(source: str | Path) -> bool:
    """Whether ``source`` names a model file or SavedModel folder rather than a registered base.

    Example:
        >>> is_model_file("resnet50"), is_model_file("my_model.h5")
        (False, True)
    """
    text = str(source)
    return Path(text).suffix.lower() in {".keras", ".h5", ".hdf5"} or Path(text).is_dir() or "/" in text


def is_savedmodel(source: str | Path) -> bool:
    """Whether ``source`` is a SavedModel folder (it holds ``saved_model.pb``), told without TensorFlow.

    Example:
        >>> is_savedmodel("my_model.h5")
        False
    """
    return Path(source).is_dir() and (Path(source) / "saved_model.pb").is_file()


def load_base(
    source: str | Path,
    *,
    image_size: int | None = None,
    weights: str | Path | None = "imagenet",
    cut: str | None = None,
    preprocess: str | None = None,
    trust_model: bool = False,
) -> Base:
    """Load a named ImageNet base or a personal model, cut where features end.

    Args:
        source: a registered base name (``graft bases`` lists them) or a ``.keras``/``.h5``/SavedModel path.
        image_size: square input size; defaults to the base's own.
        weights: ``"imagenet"`` (resolved offline first), a weights file, or ``None`` for random weights.
            Ignored for personal models, which bring their own.
        cut: layer to cut at; by default the end of the base's feature extractor.
        preprocess: override the preprocessing mode (see :data:`graftkit.bases.preprocess.MODES`).
        trust_model: allow personal models that contain custom Python code.

    Example:
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> base.feature_shape
        (3, 3, 1280)
    """
    if is_model_file(source):
        from graftkit.bases.personal import load_personal

        base = personal_base(load_personal(Path(source), trust_model=trust_model), source,
                             image_size=image_size, cut=cut, preprocess=preprocess)
        if preprocess is None:
            log.info(f"preprocessing '{base.preprocessing}' ({MODE_HELP[base.preprocessing]}): "
                     f"{base.preprocessing_why}")
        for note in base.notes:
            log.warn(note)
        return base
    if not registry.is_known(str(source)):
        registry.get_spec(str(source))  # raises the unknown-name error listing the known bases
    spec = registry.get_spec(str(source))
    model, info = _load_named(spec, image_size, weights)
    if cut is not None:
        from graftkit.model.cut import cut_at

        model = cut_at(model, cut)
    return Base(model=_named(model, source, spec.layer_groups), source=str(source),
                preprocessing=preprocess or info["preprocessing"], image_size=info["image_size"],
                cut=cut if cut is not None else model.layers[-1].name, weights=info["weights"],
                preprocessing_why=f"base '{spec.name}' was trained on it")


def personal_base(model, source: str | Path, *, image_size: int | None = None, cut: str | None = None,
                  preprocess: str | None = None) -> Base:
    """A personal model (from :func:`~graftkit.bases.personal.load_personal`) checked and cut as ``graft train``
    uses it: its input shape and channels, its cut, its preprocessing and what to know about it.

    A grayscale model (input ``(H, W, 1)``) takes 1-channel images; one whose input has no channel
    axis (``(H, W)``, an MNIST model) gets one, so it takes ``(H, W, 1)`` images too.

    Args:
        model: the loaded model.
        source: its file (for messages).
        image_size: the input size asked for; it must match a model with a fixed input size.
        cut: the layer to cut at (``--cut``); by default where its features end (:func:`find_cut`).
        preprocess: a preprocessing mode that overrides the one read from the model.

    Raises:
        GraftError: the model is not one graftkit can train on (one line: why, and what to do).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((28, 28)), keras.layers.Reshape((28, 28, 1)),
        ...                       keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(),
        ...                       keras.layers.Dense(10, activation="softmax")])
        >>> base = personal_base(m, "mnist.keras")
        >>> base.channels, base.image_size, base.cut, base.feature_shape
        (1, 28, 'conv', (26, 26, 4))
    """
    import keras

    from graftkit.bases.preprocess import explain_preprocessing
    from graftkit.model.cut import cut_at, find_cut, probability_note

    path = Path(source)
    if len(model.inputs) != 1:
        raise GraftError(f"model '{path}' takes {len(model.inputs)} inputs: graftkit needs a model with one "
                         "image input")
    shape = tuple(model.inputs[0].shape[1:])
    original = model
    if len(shape) == 2 and all(d is None or d >= 8 for d in shape):  # (H, W): grayscale without a channel axis
        model = _with_channel_axis(model, shape)
        shape = (*shape, 1)
    if len(shape) != 3:
        raise GraftError(f"model '{path}' takes inputs of shape {shape}, not images (height, width, channels): "
                         "use a model whose input is an image")
    if shape[-1] not in (None, 1, 3):
        first = " (it looks channels-first)" if shape[0] in (1, 3) else ""
        raise GraftError(
            f"model '{path}' expects {shape[-1]}-channel images{first}; graftkit feeds RGB (3) or grayscale (1) "
            "images, channels last (height, width, channels): re-save the model with such an input")
    fixed = shape[0] if shape[0] == shape[1] and shape[0] is not None else None
    if shape[0] != shape[1] and None not in shape[:2]:
        raise GraftError(f"model '{path}' takes {shape[0]}x{shape[1]} images; graftkit feeds square images: "
                         "re-save the model with a square input")
    if image_size and fixed and image_size != fixed:
        raise GraftError(f"model '{path}' takes {fixed}x{fixed} images: drop --image-size or pass {fixed}")
    mode, why, guessed = explain_preprocessing(original)
    if preprocess is not None:
        mode, why = preprocess, "--preprocess"
    elif guessed:
        why += " (a guess: if the model was trained on other values, pass --preprocess tf, torch, caffe or none)"
    name = cut if cut is not None else find_cut(original)
    cut_model = cut_at(model, name)
    notes = [note for note in (probability_note(model, cut_model, name),) if note]
    return Base(model=_named(cut_model, source), source=str(source), preprocessing=mode,
                image_size=image_size or fixed or 224, cut=name, weights=str(source),
                inference_only=bool(getattr(model, "_graft_inference_only", False)),
                channels=int(shape[-1] or 3), preprocessing_why=why, notes=tuple(notes))


def _with_channel_axis(model, shape):
    """``model`` behind a ``Reshape`` from ``(H, W, 1)`` to its own ``(H, W)`` input (built-in layers only)."""
    import keras

    inputs = keras.Input((*shape, 1), name="image")
    reshaped = keras.layers.Reshape(shape, name="drop_channel_axis")(inputs)
    wrapped = keras.Model(inputs, model(reshaped), name=f"{model.name}_1ch")
    for flag in ("_graft_inference_only", "_graft_source"):
        if hasattr(model, flag):
            setattr(wrapped, flag, getattr(model, flag))
    return wrapped


def _named(model, source, layer_groups=()):
    """``model`` as the functional model called ``base`` that every base is."""
    import keras

    named = keras.Model(_single(model.inputs), _single(model.outputs), name="base")
    named._graft_layer_groups = layer_groups
    named._graft_source = str(source)
    if getattr(model, "_graft_inference_only", False):
        named._graft_inference_only = True
    return named


def check_source(source: str, *, image_size: int | None = None, freeze=None) -> None:
    """Check a ``--base`` without loading it: a model file or folder that exists, or a known base name whose
    smallest input size ``image_size`` meets and whose blocks a ``blocks:N`` freeze spec fits (imports no
    TensorFlow).

    Example:
        >>> check_source("efficentnet_lite0")
        Traceback (most recent call last):
        graftkit.errors.GraftError: unknown base 'efficentnet_lite0': did you mean efficientnet_lite0? (graft bases lists all 31; or pass the path of a model file)
    """
    from graftkit.bases.spec import TFIDF
    from graftkit.bases.text import is_text_base
    from graftkit.model.freeze import check_blocks

    if source == TFIDF or is_text_base(source):
        return  # a text base: its weights and folder are checked as it loads
    if is_model_file(source):
        if not Path(source).exists():
            raise GraftError(f"--base '{source}' does not exist: pass a .keras / .h5 file, a SavedModel folder "
                             "or a base name (graft bases)")
        if is_savedmodel(source) and freeze is not None and freeze.kind != "all":
            raise GraftError(f"--base '{source}' is a SavedModel folder, which Keras 3 can run but not fine-tune: "
                             "pass --freeze all (the head trains on its outputs), or use the model's .keras / .h5 "
                             "file to fine-tune it")
        if freeze is not None and freeze.kind == "blocks":
            check_blocks(freeze.count, (), source)
        return
    spec = registry.get_spec(source)
    if freeze is not None and freeze.kind == "blocks":
        check_blocks(freeze.count, spec.layer_groups, spec.name)
    if image_size is not None and image_size < spec.min_size:
        raise GraftError(f"--image-size {image_size} is too small for base '{spec.name}': use at least "
                         f"{spec.min_size}")


def _load_named(spec: registry.BaseSpec, image_size: int | None, weights):
    size = image_size or spec.default_size
    if size < spec.min_size:
        raise GraftError(f"--image-size {size} is too small for base '{spec.name}': use at least {spec.min_size}")
    model = spec.build(include_top=False, input_shape=(size, size, 3))
    if weights is None or str(weights).lower() in {"none", "random"}:
        source = "random"
    else:
        explicit = None if str(weights).lower() == "imagenet" else weights
        path, wf = weight_files.resolve(spec, size, explicit)
        _load_weights(spec, model, path, wf, size)
        source = str(path)
    return model, {"preprocessing": spec.preprocessing, "image_size": size, "weights": source,
                   "cut_default": None, "layer_groups": spec.layer_groups}


def _load_weights(spec, model, path: Path, wf, size: int) -> None:
    try:
        if not wf.with_top:
            model.load_weights(str(path))
            return
        top_size = wf.size or size
        full = spec.build(include_top=True, input_shape=(top_size, top_size, 3))
        full.load_weights(str(path))
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())
    except GraftError:
        raise
    except (ValueError, OSError, KeyError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise GraftError(
            f"weights file '{path}' does not fit base '{spec.name}' ({reason}): pass the file made for this "
            f"base (see `graft bases`)"
        ) from None


def _single(tensors):
    """A lone tensor rather than a one-element list, so calling the model with a tensor matches its structure."""
    return tensors[0] if len(tensors) == 1 else tensors
