"""Video datasets and the loaders of the three on-disk layouts of method.md §1 (plus the synthetic set).

``load_datasets(data_cfg, num_classes, k)`` returns ``(train, test)`` :class:`VideoDataset` objects
for ``data_cfg.layout`` in

* ``'synthetic'`` - the embedded THUMOS14-shaped set (see :mod:`case_fast.data.synthetic`);
* ``'basnet'``    - BaS-Net/ASL THUMOS14 layout: ``root/gt.json``, ``root/split_<subset>.txt`` and
  ``root/features/<subset>/{rgb,flow}/<video>.npy`` (each (T_v, D) float32; RGB|flow concatenated).
  ``<subset>`` is ``data_cfg.train_subset`` / ``test_subset`` (defaults 'train' / 'test', i.e. the
  usual ``split_train.txt`` / ``split_test.txt``). Optional ``root/Ambiguous_test.txt`` gives the
  ambiguous segments; optional ``root/classlist.txt`` (one class per line) fixes the class list and
  order, otherwise it is the sorted unique labels of ``gt.json`` (THUMOS14: the 20 classes in
  alphabetical order);
* ``'wtalc'``     - W-TALC/CO2-Net/DELU layout: ``root/<prefix>-I3D-JOINTFeatures.npy`` (object array of
  (T_v, 2D) arrays) and ``root/<prefix>-Annotations/*.npy``, ``<prefix>`` = ``data_cfg.dataset_name``.
  Classes are ``classlist.npy`` in its order; video labels ``labels_all.npy`` (else the segment labels);
* ``'anet_json'`` - ActivityNet-style JSON (``data_cfg.annotation_file``, default ``root/annotations.json``)
  with per-video ``<id>.npy`` or ``v_<id>.npy`` feature files (T_v, 2D) in ``data_cfg.feature_dir``
  (default ``root/features``). Classes: sorted unique labels of the whole JSON.

Only the splits asked for are read: ``load_splits(cfg, G, k, ("test",))`` (``case-fast detect``)
touches neither the training split file nor the training features.

Subset names. A configured subset name that appears in the files is used as is. Otherwise the
defaults are mapped: for ``anet_json`` 'train' -> 'training' and 'test' -> 'validation'; for ``wtalc``
'train' -> 'training' if present else 'validation' (THUMOS14: the validation videos are the training
set) and 'test' -> 'validation' (ActivityNet1.2, which has no 'test' subset).

Validation and errors. Every problem raises :class:`DataError` (a ``ValueError``) whose message names
the file and/or the video. What is checked, and when:

* at load time (``load_datasets`` / ``load_splits``), before anything is trained or written: the
  annotation files through the parsers of :mod:`case_fast.data.annotations` (shared with
  ``case-fast eval``: missing/empty/unreadable files, malformed JSON, a key named twice, wrong JSON
  types, malformed segments - not two finite numbers with 0 <= start <= end -, a video named twice),
  a split file naming a video absent from ``gt.json``, a video in both splits, labels not in
  the class list, a class count other than ``num_classes``, k outside [1, T]; and for the feature files, from their ``.npy`` headers: a missing
  file, a corrupt/unreadable/truncated file, a width other than ``data_cfg.feature_dim`` (per stream
  ``feature_dim/2`` for 'basnet'), zero snippets, RGB and flow of different lengths;
* NaN/inf values need the data itself: by default ``load_datasets(..., validate=True)`` reads every
  feature file once at load time (keeping it in the in-memory cache when the whole set fits in
  ``cache_bytes``), so a trainer that calls ``load_datasets`` before creating its output folder never
  writes partial outputs because of bad data. With ``validate=False`` the same check runs on the
  first access of that video's features (``VideoDataset.features``); ``VideoDataset.validate()`` runs
  it for all videos on demand. The synthetic set is generated, so it is not re-scanned.

Videos shorter than k snippets are *not* an error: every video is resampled to T snippets
(method.md §1, indices repeat when T_v < T) and top-k acts on the T sampled snippets; real THUMOS14 has 60
videos with T_v < 93. What must hold is 1 <= k <= T (checked).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from .annotations import DataError
from .layouts import DEFAULT_CACHE_BYTES, ROLES, _roles, load_anet_json, load_basnet, load_wtalc
from .video_dataset import VideoDataset

LAYOUTS = ("synthetic", "basnet", "wtalc", "anet_json")


def load_splits(data_cfg, num_classes: int, k: int, roles: Sequence[str] = ROLES, *,
                validate: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES) -> List[VideoDataset]:
    """The datasets of ``roles`` ('train' and/or 'test', in that order) of ``data_cfg.layout``;
    only those splits' files are read. Every data problem raises DataError here (with
    ``validate=True``, also NaN/inf in feature files), before any training."""
    roles = _roles(roles)
    T = int(data_cfg.num_segments)
    if T < 1:
        raise DataError(f"data.num_segments must be positive, got {T}")
    if not 1 <= int(k) <= T:
        raise DataError(f"top-k size k = {k} must be in [1, data.num_segments = {T}]")
    layout = str(data_cfg.layout)
    if layout == "synthetic":
        from .synthetic import load_synthetic
        both = dict(zip(ROLES, load_synthetic(data_cfg, num_classes)))
        return [both[r] for r in roles]
    if layout == "basnet":
        out = load_basnet(data_cfg, num_classes, cache_bytes, roles)
    elif layout == "wtalc":
        out = load_wtalc(data_cfg, num_classes, roles)
    elif layout == "anet_json":
        out = load_anet_json(data_cfg, num_classes, cache_bytes, roles)
    else:
        raise DataError(f"unknown data.layout {layout!r} (expected one of {LAYOUTS})")
    if validate:
        for ds in out:
            ds.validate()
    return out


def load_datasets(data_cfg, num_classes: int, k: int, *, validate: bool = True,
                  cache_bytes: int = DEFAULT_CACHE_BYTES) -> Tuple[VideoDataset, VideoDataset]:
    """(train, test) datasets of ``data_cfg.layout`` (:func:`load_splits` of both roles)."""
    train, test = load_splits(data_cfg, num_classes, k, ROLES, validate=validate, cache_bytes=cache_bytes)
    return train, test
