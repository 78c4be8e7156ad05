"""The node's parameter table (`params.PARAMS`) on an rclpy node: declared, each with its description, read-only
flag and range in a ``ParameterDescriptor`` (``ros2 param describe`` shows them, rclpy enforces the ranges), and
the checks of a live change beyond those ranges."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from .params import PARAMS, ParamSpec, check_grid_param

_LIVE = {spec.name for spec in PARAMS if not spec.read_only}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(
        description=spec.description, read_only=spec.read_only, additional_constraints=spec.constraints
    )
    if spec.range is not None:
        if isinstance(spec.default, float):
            d.floating_point_range = [
                FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]))
            ]
        else:
            d.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return d


def declare(node: Node, spec: ParamSpec) -> Any:
    """Declare a parameter, its value; a string list (empty by default, which has no ROS type) stays unset
    until given."""
    if spec.default == []:
        node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor(spec))
        try:
            return list(node.get_parameter(spec.name).value)
        except ParameterUninitializedException:
            return []
    node.declare_parameter(spec.name, spec.default, descriptor(spec))
    return node.get_parameter(spec.name).value


def declare_all(node: Node) -> dict[str, Any]:
    """Declare every parameter of the table on ``node``; name -> value (as given, else the default)."""
    return {spec.name: declare(node, spec) for spec in PARAMS}


def live_updates(params: list[Parameter], max_points_per_request: int) -> dict[str, Any]:
    """A ``set_parameters`` request's changes to the node's own live parameters, name -> value, checked whole:
    ValueError (the reason) when any is refused, so the request is applied whole or not at all."""
    updates: dict[str, Any] = {}
    for param in params:
        if param.name not in _LIVE:
            continue  # read-only ones are refused by rclpy itself; qos_overrides.* are not ours
        if param.name == "visibility_threshold" and not 0.0 <= float(param.value) <= 1.0:
            raise ValueError("visibility_threshold must be in [0, 1]")
        if param.name in ("grid_size", "mask_grid_size"):
            check_grid_param(param.name, int(param.value), max_points_per_request)
        updates[param.name] = param.value
    return updates
