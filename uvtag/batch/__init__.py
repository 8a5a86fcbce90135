"""Tagging a folder: the in-process runner (`run`), worker processes on one machine
(`processes`), Ray Data on a cluster (`ray`), the kill-safe resumable output (`output`),
`--shard i/n` partitions (`shard`) and `uvtag merge` (`merge`)."""
