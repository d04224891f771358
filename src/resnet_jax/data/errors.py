"""The errors of the data package: the data set is not on this machine, or a file is corrupt."""
from resnet_jax.errors import CorruptDataError, UserError

__all__ = ["CorruptDataError", "DataUnavailableError"]


class DataUnavailableError(UserError, RuntimeError):
  """A data set is neither in the given files nor prepared for tfds.

  The message always says how to obtain the data, so that a missing download ends in one readable
  line instead of a traceback from deep inside tensorflow_datasets.
  """
