"""Command handlers for `fraudlens` subcommands that live outside app/cli.py."""
