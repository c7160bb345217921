"""The top layer: what the ``mathpal`` commands do beyond calling one stage (``ask``, the demo).

``mathpal_cli.py`` is the shell of options; the work of a command that spans stages (training,
generation, data) lives here, so the stages below never import each other or this package.
"""
