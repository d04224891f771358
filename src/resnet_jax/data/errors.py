"""The one error type that means "the data set is not on this machine"."""


class DataUnavailableError(RuntimeError):
  """A data set is neither in the given files nor prepared for tfds.

  The message always says how to obtain the data, so that a missing download ends in one readable
  line instead of a traceback from deep inside tensorflow_datasets.
  """
