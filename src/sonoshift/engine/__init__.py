"""The shared training engine: one explicit loop (loop.py) and the pieces it uses. See docs/engine.md."""
