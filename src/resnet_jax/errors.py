"""The errors a person can fix. The commands print their message as one plain line on stderr
and exit with status 1; any other exception is a bug and keeps its traceback."""


class UserError(Exception):
  """Base of every error whose message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
  """A config field has a value the run cannot use."""


class ConfigMismatchError(UserError, ValueError):
  """The workdir holds a run of another config (or of other data)."""


class WorkdirLockedError(UserError, RuntimeError):
  """Another process is running in the workdir."""


class CorruptFileError(UserError, ValueError):
  """A file the run wrote earlier cannot be read."""


class CorruptDataError(UserError, ValueError):
  """A data file is truncated, corrupt or not the file it claims to be."""


class NoRunError(UserError, FileNotFoundError):
  """The workdir holds no run (or no checkpoint of it)."""


class NonFiniteError(UserError, RuntimeError):
  """The loss or the gradient norm stopped being finite."""


class CheckpointMismatchError(UserError, ValueError):
  """A checkpoint (a run's, or a torch state dict) does not fit the model that reads it: a
  parameter is missing, extra or of another shape."""


class ConversionError(UserError, ValueError):
  """A model or file that the torch conversion cannot take: a model with no torchvision or timm
  counterpart, a PyTorch pickle where torch is not installed, an output that exists."""
