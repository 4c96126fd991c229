"""The method (method.md §2-4, §8): what CASE computes, independent of how a run is driven.

    model.py          the two-stream network
    losses.py         video MIL loss, generalized BCE attention loss, soft cross-entropy
    pseudo_labels.py  Q^A, Q^S (SCC with the rank prior), Q^C (CCC)
    released_init.py  a run's initial weights, drawn from its seed in the released order
    case_head.py      the CASE head (SCC, CCC, P^T) for any model, and the one fusion of streams

A change to the method goes here; it uses ``case_fast.ops`` and the configuration, nothing of
training, inference or evaluation. What the head attaches to is in :mod:`case_fast.baselines`;
the step that joins a baseline's losses and the head's is :mod:`case_fast.training.step`.
"""
