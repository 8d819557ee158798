"""labxblock's Tutor plugin (entry point ``tutor.plugin.v1``: ``labxblock = labxblock.tutor.plugin``).

Loaded by Tutor only; the LMS and Studio never import it.
"""
