"""The core layer: constants, errors, paths, seeding, hashing, small I/O helpers, configuration and the
compute cluster. It imports nothing else of the library."""
