"""The `fraudlens` command: `main.py` parses and dispatches; one module per command group."""
