"""Load a base: a named ImageNet backbone or a personal model file, cut and ready for a head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graftkit.bases import registry
from graftkit.bases import weights as weight_files
from graftkit.errors import GraftError


@dataclass
class Base:
    """A pre-trained base cut for transfer.

    Attributes:
        model: a Keras model from preprocessed images to features (named ``base``).
        source: the base name or the model file it came from.
        preprocessing: the :class:`~graftkit.bases.preprocess.Preprocess` mode it needs.
        image_size: the square input size it is built for.
        cut: the name of the layer it ends at.
        weights: where its weights came from (a file, ``random``, or the personal model file).
        inference_only: True when it can be used frozen only (SavedModel bases).
    """

    model: object
    source: str
    preprocessing: str
    image_size: int
    cut: str
    weights: str
    inference_only: bool = False

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
    from graftkit.model.cut import cut_at

    if is_model_file(source):
        model, info = _load_personal(Path(source), image_size, trust_model)
    elif registry.is_known(str(source)):
        model, info = _load_named(registry.get_spec(str(source)), image_size, weights)
    else:
        registry.get_spec(str(source))  # raises the unknown-name error listing the known bases
    if cut is not None or info["cut_default"] is not None:
        model = cut_at(model, cut if cut is not None else info["cut_default"])
    import keras

    named = keras.Model(_single(model.inputs), _single(model.outputs), name="base")
    named._graft_layer_groups = info.get("layer_groups", ())
    named._graft_source = str(source)
    inference_only = bool(getattr(model, "_graft_inference_only", False))
    if inference_only:
        named._graft_inference_only = True
    return Base(
        model=named,
        source=str(source),
        preprocessing=preprocess or info["preprocessing"],
        image_size=info["image_size"],
        cut=model.layers[-1].name,
        weights=info["weights"],
        inference_only=inference_only,
    )


def check_source(source: str, *, image_size: int | None = None, freeze=None) -> None:
    """Check a ``--base`` without loading it: a model file or folder that exists, or a known base name whose
    smallest input size ``image_size`` meets and whose blocks a ``blocks:N`` freeze spec fits (imports no
    TensorFlow).

    Example:
        >>> check_source("efficentnet_lite0")
        Traceback (most recent call last):
        graftkit.errors.GraftError: unknown base 'efficentnet_lite0': did you mean efficientnet_lite0? (graft bases lists all 31; or pass the path of a model file)
    """
    from graftkit.model.freeze import check_blocks

    if is_model_file(source):
        if not Path(source).exists():
            raise GraftError(f"--base '{source}' does not exist: pass a .keras / .h5 file, a SavedModel folder "
                             "or a base name (graft bases)")
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


def _load_personal(path: Path, image_size: int | None, trust: bool):
    from graftkit.bases.personal import load_personal
    from graftkit.bases.preprocess import guess_preprocessing
    from graftkit.model.cut import find_cut

    model = load_personal(path, trust_model=trust)
    if len(model.inputs) != 1:
        raise GraftError(f"model '{path}' takes {len(model.inputs)} inputs: graftkit needs a model with one "
                         "image input")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3:
        raise GraftError(f"model '{path}' takes inputs of shape {shape}, not images (height, width, 3): "
                         "use a model whose input is an RGB image")
    if shape[-1] not in (None, 3):
        first = " (it looks channels-first)" if shape[0] in (1, 3) else ""
        raise GraftError(
            f"model '{path}' expects {shape[-1]}-channel images{first}; graftkit feeds RGB images "
            "(height, width, 3): retrain or re-save the model with a 3-channel, channels-last input"
        )
    fixed = shape[0] if len(shape) == 3 and shape[0] == shape[1] and shape[0] is not None else None
    if image_size and fixed and image_size != fixed:
        raise GraftError(f"model '{path}' takes {fixed}x{fixed} images: drop --image-size or pass {fixed}")
    size = image_size or fixed or 224
    return model, {"preprocessing": guess_preprocessing(model), "image_size": size, "weights": str(path),
                   "cut_default": find_cut(model)}


def _single(tensors):
    """A lone tensor rather than a one-element list, so calling the model with a tensor matches its structure."""
    return tensors[0] if len(tensors) == 1 else tensors
