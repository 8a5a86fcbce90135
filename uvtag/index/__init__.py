"""The tag index: batch results in one SQLite database (`schema`), written video by video
(`writer`), searched by label and time range and by embedding similarity (`query`)."""
