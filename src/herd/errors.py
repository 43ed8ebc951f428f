"""Errors shared by the stages, in a module that imports nothing (so importing one costs no
rerun trigger: see herd.code_closure)."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key at fault."""
