"""Data in and out of isthmus: every source becomes a validated :class:`Table`.

Sources: in-memory arrays, CSV/Parquet/npy/npz files, torchvision-style image folders, LeCun idx
files, local copies of real data sets (:func:`find_data`, ``$ISTHMUS_DATA``), offline built-ins
(scikit-learn digits) and a procedural shapes generator with known factors. Plus splits, scalers
that serialise to JSON, and sliding windows for time series. Nothing here downloads.
"""

from isthmus.data.builtin import DigitSplit, load_digit_split, load_digits
from isthmus.data.idx import load_mnist_idx, read_idx, write_idx
from isthmus.data.images import IMAGE_EXTENSIONS, load_image_folder
from isthmus.data.paths import DataNotFoundError, data_search_paths, find_data, load_mnist
from isthmus.data.scalers import SCALERS, IdentityScaler, MinMaxScaler, Scaler, StandardScaler, make_scaler
from isthmus.data.shapes import FACTOR_NAMES, SHAPES, ShapesConfig, make_shapes, render_shapes, shapes_from_config
from isthmus.data.toys import make_gaussian_classes
from isthmus.data.sources import from_arrays, load_csv, load_npy, load_npz, load_parquet, load_table
from isthmus.data.split import split_indices, train_val_split
from isthmus.data.table import Table
from isthmus.data.validation import DataError, check_feature_count, validate_array
from isthmus.data.windows import n_windows, sliding_windows, window_labels

__all__ = [
    "Table",
    "DataError",
    "DataNotFoundError",
    "validate_array",
    "check_feature_count",
    "from_arrays",
    "load_csv",
    "load_parquet",
    "load_npy",
    "load_npz",
    "load_table",
    "load_image_folder",
    "IMAGE_EXTENSIONS",
    "load_mnist_idx",
    "read_idx",
    "write_idx",
    "find_data",
    "data_search_paths",
    "load_mnist",
    "train_val_split",
    "split_indices",
    "Scaler",
    "StandardScaler",
    "MinMaxScaler",
    "IdentityScaler",
    "make_scaler",
    "SCALERS",
    "load_digits",
    "load_digit_split",
    "DigitSplit",
    "make_gaussian_classes",
    "make_shapes",
    "render_shapes",
    "shapes_from_config",
    "ShapesConfig",
    "SHAPES",
    "FACTOR_NAMES",
    "sliding_windows",
    "window_labels",
    "n_windows",
]
