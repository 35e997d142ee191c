"""`jaxadapt bench` and `jaxadapt report`: suites of named runs (suite.py; matrix.py expands
tasks x methods x sizes x seeds into them), the one runner (runlist.py), the results file
(results.py) and the report kinds (reports/)."""
