"""Training runs: the step that joins a baseline and the CASE head, the loop around it and the files a run writes.

    trainer.py          ``train()``: checks, the run directory's lock, data, then the loop
    loop.py             steps, periodic evaluations, best-checkpoint selection, the summary
    step.py             one training step: the baseline's losses and Q^A, the CASE head's SCC and CCC
    batches.py          the feature bank, the run's random streams, the validation hold-out
    periodic_eval.py    evaluation during training and the logged summaries
    checkpoint.py       last.pt / best.pt: reading, resume checks, loading a model
    run_files.py        a run directory's files, ``--restart``
    graph_step.py       ``train.cuda_graph``: the step captured as a CUDA graph
    distributed.py      data parallel under torchrun
    tensorboard_log.py  TensorBoard event files of a run
"""
