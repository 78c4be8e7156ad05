"""The offline ROS tools: bag conversion and evaluation, live replay against the node process, the demo.

They depend on the node only through its public entry points (parameters, conversions, diagnostic keys and the
``python -m cotracker3_ros.node`` process); the node's runtime never imports them (docs/architecture.md).
"""
