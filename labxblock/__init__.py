"""labxblock: a real, life-sized lab for every learner, inside Open edX."""

__version__ = "0.1.0.dev0"
