"""graftkit: transfer learning for your own models on TensorFlow / Keras 3."""

from graftkit.settings import quiet_tensorflow

quiet_tensorflow()

__version__ = "0.1.0"
