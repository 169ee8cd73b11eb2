"""w2s: weak-to-strong generalization experiments, from a validated spec to PGR reports."""

__version__ = "0.1.0"
