"""`uvtag features`: one float32 [T, C] array of video embeddings per video, for downstream models.

`plan` is the pure part (window settings, output names, manifest records), `store` the kill-safe
folder of `.npy` files and its JSON-lines manifest (a writer with `BatchWriter`'s interface), and
`extract` runs `uvtag.batch.run.run_batch` with embeddings into a store: the same decoding,
cross-video batching, failures and resume as `uvtag batch`.
"""

from uvtag.features.extract import run_features, run_features_parallel, run_features_ray
from uvtag.features.plan import FeatureSettings, feature_names, feature_record, window_settings
from uvtag.features.store import MANIFEST_NAME, FeatureStore, manifest_name, manifests, read_manifest

__all__ = ["MANIFEST_NAME", "FeatureSettings", "FeatureStore", "feature_names", "feature_record", "manifest_name",
           "manifests", "read_manifest", "run_features", "run_features_parallel", "run_features_ray", "window_settings"]
