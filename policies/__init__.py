"""The privacy domain of Sluice: catalog, policies, the evaluation engine and badges.

Pure Python: this package imports neither FastAPI nor litellm, reads no environment
and keeps no mutable module state. The gateway depends on it, never the reverse.
"""
