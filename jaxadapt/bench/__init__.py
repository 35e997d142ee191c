"""`jaxadapt bench`: run a suite of adaptation cells and report on the results."""
