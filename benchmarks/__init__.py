"""Speed and memory benchmarks of the engine (`benchmarks.engine`) and the node (`benchmarks.node`).

A development tool, run from a checkout (``make bench``); not installed with the package.
"""
