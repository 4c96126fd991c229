"""Data layer: datasets of the three on-disk layouts, method.md §1 sampling, the synthetic THUMOS14 set."""
from .dataset import DataError, VideoDataset, load_datasets, load_splits
from .sampling import sample_batch, sample_test_indices, sample_train_indices
from .synthetic import (THUMOS14_CLASSES, assets_dir, embedded_thumos14_test, load_synthetic,
                        snippet_labels)

__all__ = ["DataError", "VideoDataset", "load_datasets", "load_splits", "sample_batch", "sample_test_indices",
           "sample_train_indices", "THUMOS14_CLASSES", "assets_dir", "embedded_thumos14_test",
           "load_synthetic", "snippet_labels"]
