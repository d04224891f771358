"""Host-side data: the data sets held in memory as normalised numpy arrays (`dataset.py`), and the
streamed ones: prepared directories of JPEG records (`records.py`, `prepare_imagenet.py`), their
transforms (`imagenet.py`) and the worker-process stream over them (`stream.py`)."""
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
