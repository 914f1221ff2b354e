"""Generation of the simulated datasets from a source (the virtual lab or a real dataset): tasks, poses,
rendering in work units, the cache and its manifest."""
