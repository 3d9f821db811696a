"""Example services: each folder is a service with several implementations and the Bakeoff that runs them.

Installed as ``bakeoff.examples`` (package data) so the demo runs from a wheel; see
``bakeoff.common.paths.examples_dir``.
"""
