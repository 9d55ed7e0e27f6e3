"""The benchmark harness: `bench/run.py` compares direct, Sluice and LiteLLM Proxy (see bench/README.md)."""
