"""Configs: composition, override checks and config checks that fail with one `error:` line before anything runs."""
