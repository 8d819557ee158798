"""Moving from stackamole-xblock (formerly hastexo-xblock): courses, served block names, running stacks.

Pure of Django here and in ``fields``, ``olx``, ``convert`` and ``course``: what the old
packages' blocks hold (``fields``), how their OLX reads (``olx``), what it becomes here
(``convert``), and a whole course export rewritten offline (``course``). ``block`` serves
the old entry-point names, ``names`` chooses between the old package and labxblock while
both are installed, and ``stacks`` reads the old package's stack table for the migration
command. The field-by-field mapping is in docs/legacy-fields.md.
"""

LEGACY_TAGS = ("stackamole", "hastexo")
