"""One module per stage: its config, `sample`, `apply` and `Stage` record (`registry`)."""
