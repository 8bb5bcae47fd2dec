"""The ``sonoshift`` command line: one subcommand per stage, each over one API function.

Each module in this package that defines ``register(app)`` adds its subcommands; ``main`` finds them.
"""
