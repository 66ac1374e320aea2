"""graftkit: transfer learning for your own models on TensorFlow / Keras 3.

Example:
    >>> import graftkit
    >>> run = graftkit.train("photos/", base="mobilenet_v2_0.5", freeze="last:20")  # doctest: +SKIP
"""

from graftkit.settings import quiet_tensorflow

quiet_tensorflow()

from graftkit.advice import advise  # noqa: E402  (TensorFlow options must be set first)
from graftkit.api import Run, load, lr_find, resume, train  # noqa: E402
from graftkit.errors import GraftError  # noqa: E402

__all__ = ["GraftError", "Run", "advise", "load", "lr_find", "resume", "train"]
__version__ = "0.1.0"
