"""Find the ImageNet weights of a named base, offline first.

Order: an explicit path, then ``$GRAFT_WEIGHTS_DIR``, then the Keras cache
(``~/.keras/models``, under the names Keras itself downloads), then the base's own
offline source (e.g. converted EfficientNet-Lite0 weights), then Keras' download.
"""

from __future__ import annotations

from pathlib import Path

from graftkit import settings
from graftkit.bases.spec import BaseSpec, WeightFile
from graftkit.errors import GraftError


def ordered_files(spec: BaseSpec, image_size: int) -> list[WeightFile]:
    """The spec's weight files, best first: no-top before with-top, matching size before others.

    Example:
        >>> from graftkit.bases.registry import get_spec
        >>> ordered_files(get_spec("mobilenet_0.25"), 128)[0].name
        'mobilenet_2_5_128_tf_no_top.h5'
    """

    def rank(item: tuple[int, WeightFile]):
        index, wf = item
        size_rank = 0 if wf.size in (None, image_size) else 1 if wf.size == spec.default_size else 2
        return (wf.with_top, size_rank, index)

    return [wf for _, wf in sorted(enumerate(spec.weight_files), key=rank)]


def search_dirs() -> list[Path]:
    """The folders searched for weight files, in order."""
    dirs = [settings.weights_dir(), settings.keras_cache_dir()]
    return [d for d in dirs if d is not None]


def find_local(spec: BaseSpec, image_size: int) -> tuple[Path, WeightFile] | None:
    """The first weight file of ``spec`` found on this machine, or None."""
    for wf in ordered_files(spec, image_size):
        for folder in search_dirs():
            if (folder / wf.name).is_file():
                return folder / wf.name, wf
    return None


def is_ready_offline(spec: BaseSpec) -> bool:
    """Whether the base's ImageNet weights can be had without a network."""
    if find_local(spec, spec.default_size) is not None:
        return True
    return bool(spec.fetch_ready and spec.fetch_ready())


def resolve(spec: BaseSpec, image_size: int, explicit: str | Path | None = None) -> tuple[Path, WeightFile]:
    """Locate (or as a last resort download) the ImageNet weights of ``spec``.

    Args:
        spec: the base.
        image_size: the input size wanted; files made for it are preferred.
        explicit: a file the user named; its name tells whether it holds the top.

    Returns:
        The file and what it holds.

    Raises:
        GraftError: naming the base, every place looked in, and how to supply a file.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise GraftError(f"weights file '{path}' does not exist: check --weights")
        known = {wf.name: wf for wf in spec.weight_files}
        return path, known.get(path.name, WeightFile(path.name, with_top=_looks_with_top(path)))
    found = find_local(spec, image_size)
    if found:
        return found
    if spec.fetch is not None and (spec.fetch_ready is None or spec.fetch_ready()):
        wf = spec.weight_files[0]
        return Path(spec.fetch()), wf
    download_error = _download(spec, image_size)
    if isinstance(download_error, tuple):
        return download_error
    wanted = spec.weight_files[0].name if spec.weight_files else f"{spec.name} weights"
    looked = ", ".join(str(d) for d in search_dirs()) or "(no folders)"
    raise GraftError(
        f"no ImageNet weights for base '{spec.name}': looked for {wanted} in {looked} and the download "
        f"failed ({download_error}); put the file in $GRAFT_WEIGHTS_DIR or pass --weights PATH "
        f"(or --weights none to train from random weights)"
    )


def _download(spec: BaseSpec, image_size: int):
    import keras

    candidates = [wf for wf in ordered_files(spec, image_size) if wf.origin]
    if not candidates:
        return "no download address known"
    wf = candidates[0]
    try:
        path = keras.utils.get_file(wf.name, wf.origin, cache_subdir="models")
    except Exception as error:  # get_file raises bare Exception subclasses for network failures
        return str(error).splitlines()[0][:120] if str(error) else type(error).__name__
    return Path(path), wf


def _looks_with_top(path: Path) -> bool:
    """Keras' file names mark headless weights with 'notop' / 'no_top'."""
    name = path.name.lower()
    return not ("notop" in name or "no_top" in name)
