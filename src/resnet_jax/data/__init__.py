"""Host-side data loading: every data set as normalised numpy arrays (see `dataset.py`)."""
from resnet_jax.data.cifar import read_cifar_archive
from resnet_jax.data.dataset import (
    DATASETS,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_VAL_SIZE,
    NORMALIZATIONS,
    NUM_CLASSES,
    SPLITS,
    Dataset,
    load_dataset,
)
from resnet_jax.data.errors import CorruptDataError, DataUnavailableError

__all__ = ["CorruptDataError", "DATASETS", "DEFAULT_IMAGE_SIZE", "DEFAULT_VAL_SIZE",
           "NORMALIZATIONS", "NUM_CLASSES", "SPLITS", "DataUnavailableError", "Dataset",
           "load_dataset", "read_cifar_archive"]
