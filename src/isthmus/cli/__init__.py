"""The ``isthmus`` command line. Each command group is a module listed in :mod:`isthmus.cli.main`."""
