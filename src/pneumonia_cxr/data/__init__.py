"""Data layer: discover -> cache -> split -> tf.data pipeline (and a synthetic demo dataset)."""

from .cache import build_image_cache
from .dataset import TERNARY_CLASSES, XrayData, labels_of, load_dataset, summarize
from .decode import ImageDecodeError, load_image
from .discover import DatasetError, build_manifest, find_dataset_root, parse_patient
from .split import LeakageError, assert_no_leakage, split_by_patient

__all__ = [
    "DatasetError",
    "ImageDecodeError",
    "LeakageError",
    "TERNARY_CLASSES",
    "XrayData",
    "assert_no_leakage",
    "build_image_cache",
    "build_manifest",
    "find_dataset_root",
    "labels_of",
    "load_dataset",
    "load_image",
    "parse_patient",
    "split_by_patient",
    "summarize",
]

from .pipeline import augment_acquisition, class_weights, make_dataset  # noqa: E402

__all__ += ["augment_acquisition", "class_weights", "make_dataset"]
