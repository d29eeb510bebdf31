"""Teach it: the user's corrections make the model better, on their own computer, in seconds.

corrections.py  the corrections kept as labelled examples (append-only journal)
record.py       correct_file / undo_correction: store + a `corrected` row in the results log
adapter.py      the learned head on the model's features, fitted with NumPy
learn.py        `teddywatch learn`: fit, check, keep, switch
versions.py     every learned version of a model, which one is in use, undo
engine.py       LearnedEngine: the model plus the version in use, reloaded between batches
"""
