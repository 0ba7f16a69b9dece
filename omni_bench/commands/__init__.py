"""Sub-commands of ``omni-bench``, one module each: ``HELP``, ``add_arguments(parser)`` and ``run(args)``.

A new command is a new module here; the command line finds it. Modules import heavy packages only inside
``run``, so that ``omni-bench --help`` and ``omni-bench list`` stay fast and torch-free.
"""
