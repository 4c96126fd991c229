"""The data (method.md §1): videos' features and annotations from disk, or the synthetic set.

    load.py               ``load_datasets`` / ``load_splits``: the datasets of a configured layout
    layouts.py            the loaders of the basnet, wtalc and anet_json layouts
    video_dataset.py      :class:`VideoDataset`: videos, labels, lengths, lazily read checked features
    annotations.py        one parser per annotation format (:class:`DataError` naming the file)
    wtalc_annotations.py  the W-TALC annotation folder
    sampling.py           a video of T_v snippets sampled to T (training and test)
    synthetic.py          the embedded THUMOS14-shaped set (+ assets/), versions in synthetic_v1.py
                          and synthetic_v2.py (the default)
"""
