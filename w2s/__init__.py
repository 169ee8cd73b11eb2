"""w2s: weak-to-strong generalization experiments, from a validated spec to PGR reports.

The Python API (w2s/api.py, docs/api.md): `w2s.load_spec`, `w2s.run`, `w2s.results`, `w2s.pgr`,
`w2s.ground_truth`, the figures in `w2s.plots`, and the errors they raise, `w2s.SpecError` and
`w2s.StagesFailed`. They are imported on first use, so `import w2s` (and every CLI command) stays
instant.
"""

__version__ = "0.1.0"

_API = ("load_spec", "run", "results", "pgr", "ground_truth")
_ERRORS = ("SpecError", "StagesFailed")
__all__ = [*_API, *_ERRORS, "plots", "__version__"]


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module("w2s.api"), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("w2s.errors"), name)
    if name == "plots":  # (import_module: `from w2s import plots` would ask this function again)
        return importlib.import_module("w2s.plots")
    raise AttributeError(f"module 'w2s' has no attribute {name!r}")
