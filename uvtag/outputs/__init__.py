"""What uvtag writes: machine formats (`formats`), files never seen half written (`files`),
annotated videos (`video`), localize timelines (`timeline`) and the batch HTML report (`report`)."""
