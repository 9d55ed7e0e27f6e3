"""The unit tier: one test module per source module (`tests/unit/<package>/test_<module>.py` for
`gateway/<package>/<module>.py`), calling the module directly, without an app or a socket. The
acceptance tests (`tests/gateway/`, by checklist concern) drive the same code through HTTP."""
