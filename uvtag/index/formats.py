"""`search` and `similar` answers as JSON and CSV (the tables for people are the CLI's).

search
    json  {schema_version, record: "search", labels, mode, min_score, num_videos (matches before
          --limit), videos: [{path, score, ranges: [{start_sec, end_sec, score, mean_score,
          num_clips, labels}]}]}, videos best first, ranges in time order.
    csv   one row per range, videos best first: `SEARCH_CSV_COLUMNS`; `labels` joins the range's
          labels with "|".
similar
    json  {schema_version, record: "similar", path, model, neighbours: [{rank, path, similarity}]}.
    csv   one row per neighbour: `SIMILAR_CSV_COLUMNS`.

Times and scores follow `uvtag.outputs.formats`: full precision in JSON, milliseconds and 6
decimals in CSV.
"""

from __future__ import annotations

import json
from typing import Any

from uvtag.index.query import SearchResult, SimilarResult
from uvtag.outputs.formats import csv_text, format_score, format_sec
from uvtag.results import SCHEMA_VERSION

INDEX_FORMATS = ("json", "csv")
SEARCH_CSV_COLUMNS = ("path", "start_sec", "end_sec", "score", "mean_score", "num_clips", "labels")
SIMILAR_CSV_COLUMNS = ("rank", "path", "similarity")


def search_record(result: SearchResult) -> dict[str, Any]:
    """The JSON document of a search."""
    return {
        "schema_version": SCHEMA_VERSION, "record": "search", "labels": list(result.labels), "mode": result.mode,
        "min_score": result.min_score, "num_videos": result.num_videos,
        "videos": [{"path": v.path, "score": v.score,
                    "ranges": [{"start_sec": r.start_sec, "end_sec": r.end_sec, "score": r.score,
                                "mean_score": r.mean_score, "num_clips": r.num_clips, "labels": list(r.labels)}
                               for r in v.ranges]}
                   for v in result.videos],
    }


def similar_record(result: SimilarResult) -> dict[str, Any]:
    """The JSON document of a similar query."""
    return {"schema_version": SCHEMA_VERSION, "record": "similar", "path": result.path, "model": result.model,
            "neighbours": [{"rank": n, "path": x.path, "similarity": x.similarity}
                           for n, x in enumerate(result.neighbours, start=1)]}


def render(result: SearchResult | SimilarResult, fmt: str) -> str:
    """The text of `result` in `fmt` (json or csv)."""
    if fmt == "json":
        record = search_record(result) if isinstance(result, SearchResult) else similar_record(result)
        return json.dumps(record, ensure_ascii=False, indent=2) + "\n"
    if isinstance(result, SearchResult):
        return csv_text([SEARCH_CSV_COLUMNS] + [
            (v.path, format_sec(r.start_sec), format_sec(r.end_sec), format_score(r.score), format_score(r.mean_score),
             r.num_clips, "|".join(r.labels)) for v in result.videos for r in v.ranges])
    return csv_text([SIMILAR_CSV_COLUMNS] + [(n, x.path, format_score(x.similarity))
                                            for n, x in enumerate(result.neighbours, start=1)])
