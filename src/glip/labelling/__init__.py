"""Self-training data: a teacher boxes the noun phrases of image-text pairs (``glip label``).

- `glip.labelling.sources`: the pairs of webdataset tar, JSON Lines and Parquet shards;
- `glip.labelling.phrases`: the noun phrases of a caption (spaCy);
- `glip.labelling.teacher`: one batch of pairs through the detection engine -> boxes per phrase;
- `glip.labelling.job`: the shard-level, resumable job and its output folder;
- `glip.labelling.local`: worker processes on this machine.

Importing this package loads nothing heavy (the command line's ``--help`` stays fast).
"""
