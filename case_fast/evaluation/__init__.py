"""Evaluation (method.md §6): scoring detections against ground truth, with no model involved.

    metric.py        ActivityNet-style mAP at several tIoU thresholds (the reference), the tables
    compiled_ap.py   the compiled backend: the AP ops of case_fast._C, the same APs bit for bit
    protocols.py     the protocols (basnet210, co2net, delu, wtalc): what each prepares
    matching.py      what both backends share: video lookup, input checks, IoU, ambiguous filter
    ground_truth.py  :class:`GroundTruth` and its loaders (gt.json, ActivityNet JSON, W-TALC)
    results.py       :class:`Detections` and results files (reading, writing, checks)
"""
