"""The one benchmark harness: protocol, suites, baselines, artifacts (metrics schema), roofline."""

from .metrics import SCHEMA_VERSION, ArtifactWriter, load_artifact, validate_artifact
from .protocol import Protocol, cv, gflops, kendall_tau, median

__all__ = ["SCHEMA_VERSION", "ArtifactWriter", "Protocol", "cv", "gflops", "kendall_tau",
           "load_artifact", "median", "validate_artifact"]
