"""Experiments around the method, each a ``case-fast`` subcommand; nothing else imports them.

    ablate.py        ``case-fast ablate``: the paper's ablation ladder over seeds, in parallel
    ablate_rows.py   the ablation rows as data and the job plan
    ablate_table.py  statistics over seeds and the tables / CSV
    profiling.py     ``case-fast profile``: size, speed, memory, time split of a step
    plot.py          ``case-fast plot``: figures of a run (videos, clusters)
    plot_curves.py   the training-curves figure
"""
