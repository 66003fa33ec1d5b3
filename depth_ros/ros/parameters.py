"""Node parameters declared from one table, with descriptors, checked before anything loads.

Each node lists its parameters as ``ParamSpec`` rows (name, default, description, range or
choices, whether a change is applied live). ``check_value`` is the whole validation and is
ROS-free: it accepts an integer where a number is expected (``max_depth_m: 80``, the most
common YAML slip) and refuses anything else with a ``ParameterError`` whose message is one line
naming the parameter, the value and what is allowed; ``run_node`` logs it as one FATAL line.

``declare_parameters`` declares the table on a node with ``ParameterDescriptor``s (description,
``IntegerRange``/``FloatingPointRange``, ``read_only`` where the node reads the value once), so
``ros2 param describe`` tells the truth. It uses only public rclpy API (Humble to Kilted): a
statically typed declaration first; where rclpy refuses the user's value (a wrong type, out of
range), the parameter is declared dynamically typed to read that value, checked, and then
declared again, statically typed, with the coerced value or refused with one line.
``watch_live_parameters`` validates later ``ros2 param set`` calls against the same table.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from depth_ros.errors import DepthRosError

ParamValue = bool | int | float | str | list[float]

# Kinds of parameter, named by what a user writes in YAML.
BOOL, INTEGER, NUMBER, TEXT, NUMBERS = "bool", "integer", "number", "text", "numbers"


class ParameterError(DepthRosError, ValueError):
    """A parameter value the node cannot use; the message names it, its value and what is
    allowed."""


def _kind_of(default: ParamValue) -> str:
    if isinstance(default, bool):
        return BOOL
    if isinstance(default, int):
        return INTEGER
    if isinstance(default, float):
        return NUMBER
    if isinstance(default, str):
        return TEXT
    if isinstance(default, (list, tuple)) and all(isinstance(v, float) for v in default):
        return NUMBERS
    raise TypeError(f"no parameter kind for a default of type {type(default).__name__}")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its default (which fixes its type), what it means and what it allows.

    Args:
        name: the parameter's name.
        default: its default value; a float default makes it a number, an int an integer.
        description: one line for ``ros2 param describe``.
        minimum, maximum: the inclusive range of an integer or a number (None: unbounded).
        above_minimum: the value must be strictly greater than ``minimum``.
        choices: the allowed texts of a text parameter (empty: any text).
        length: the exact length of a list of numbers (None: any).
        live: a change at run time is applied (otherwise the parameter is read-only).
        allowed: how to say what is allowed, where the range alone does not say it well.
    """

    name: str
    default: ParamValue
    description: str
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False
    choices: tuple[str, ...] = ()
    length: int | None = None
    live: bool = False
    allowed: str = ""
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind_of(self.default))
        if self.kind == NUMBERS:
            object.__setattr__(self, "default", [float(v) for v in self.default])
        # A table whose own default is refused would fail every start: catch it at import.
        check_value(self, self.default)

    def allowed_text(self) -> str:
        """What the parameter accepts, in words (ends every refusal)."""
        if self.allowed:
            return self.allowed
        if self.kind == BOOL:
            return "true or false"
        if self.kind == TEXT:
            return f"one of {', '.join(self.choices)}" if self.choices else "a text"
        if self.kind == NUMBERS:
            count = f"{self.length} " if self.length is not None else ""
            return f"a list of {count}numbers"
        noun = "an integer" if self.kind == INTEGER else "a number"
        low, high = self.minimum, self.maximum
        if low is not None and self.above_minimum:
            text = f"{noun} > {low:g}" + (f" and <= {high:g}" if high is not None else "")
        elif low is not None and high is not None:
            text = f"{noun} from {low:g} to {high:g}"
        elif low is not None:
            text = f"{noun} >= {low:g}"
        elif high is not None:
            text = f"{noun} <= {high:g}"
        else:
            text = noun
        return text


def format_value(value: Any) -> str:
    """A value as the user wrote it in YAML (texts quoted, lists in brackets)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return repr(value)  # -1.0 stays -1.0, as written
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        return "[" + ", ".join(format_value(v) for v in items) + "]"
    return str(value)


def refuse(spec: ParamSpec, value: Any, why: str = "") -> ParameterError:
    """The error for a refused value: ``parameter NAME: VALUE is not allowed[, why]; it takes
    ALLOWED``."""
    reason = f" ({why})" if why else ""
    return ParameterError(f"parameter {spec.name}: {format_value(value)} is not allowed"
                          f"{reason}; it takes {spec.allowed_text()}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(spec: ParamSpec, value: float, given: Any) -> None:
    """Refuse ``value`` outside the spec's range; the message shows it as ``given``."""
    if not math.isfinite(value):
        raise refuse(spec, given)
    if spec.minimum is not None and (value < spec.minimum
                                     or (spec.above_minimum and value == spec.minimum)):
        raise refuse(spec, given)
    if spec.maximum is not None and value > spec.maximum:
        raise refuse(spec, given)


def check_value(spec: ParamSpec, value: Any) -> ParamValue:
    """The value the node uses for ``value`` given to ``spec``; ``ParameterError`` if refused.

    An integer where a number is expected becomes a float (also inside a list of numbers);
    nothing else is converted: a text is never read as a number or a truth value.
    """
    if spec.kind == BOOL:
        if not isinstance(value, bool):
            raise refuse(spec, value)
        return value
    if spec.kind == INTEGER:
        if not isinstance(value, int) or isinstance(value, bool):
            raise refuse(spec, value)
        _check_range(spec, value, value)
        return int(value)
    if spec.kind == NUMBER:
        if not _is_number(value):
            raise refuse(spec, value)
        _check_range(spec, float(value), value)
        return float(value)
    if spec.kind == TEXT:
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise refuse(spec, value)
        return value
    # NUMBERS: rclpy hands arrays over as lists or array.array.
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise refuse(spec, value)
    items = list(value)
    if not all(_is_number(v) for v in items):
        raise refuse(spec, value)
    if spec.length is not None and len(items) != spec.length:
        raise refuse(spec, value, f"{len(items)} numbers")
    numbers = [float(v) for v in items]
    if not all(math.isfinite(v) for v in numbers):
        raise refuse(spec, value)
    return numbers


def check_values(specs: Iterable[ParamSpec], values: Mapping[str, Any]) -> dict[str, ParamValue]:
    """``check_value`` for every spec, with the default where ``values`` lacks it."""
    return {spec.name: check_value(spec, values.get(spec.name, spec.default))
            for spec in specs}


def table(*groups: Iterable[ParamSpec]) -> tuple[ParamSpec, ...]:
    """Specs of several groups as one table; a name given twice is a programming error."""
    specs = tuple(spec for group in groups for spec in group)
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"parameters declared twice: {', '.join(duplicates)}")
    return specs


def defaults(specs: Iterable[ParamSpec]) -> dict[str, ParamValue]:
    """``{name: default}`` of a table (what the config files are checked against)."""
    return {spec.name: spec.default for spec in specs}


# ROS side: descriptors, declaration, live changes.

def descriptor(spec: ParamSpec):
    """The ``rcl_interfaces/ParameterDescriptor`` of a spec (a fresh one: rclpy edits it)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    constraints = f"{spec.allowed_text()}"
    if not spec.live:
        constraints += "; read at start-up (read-only)"
    desc = ParameterDescriptor(name=spec.name, description=spec.description,
                               additional_constraints=constraints, read_only=not spec.live)
    if spec.kind in (INTEGER, NUMBER) and (spec.minimum is not None
                                           or spec.maximum is not None):
        # ROS ranges are inclusive and need both ends: an open end is the type's limit.
        if spec.kind == INTEGER:
            low = int(spec.minimum) if spec.minimum is not None else -(2 ** 63)
            high = int(spec.maximum) if spec.maximum is not None else 2 ** 63 - 1
            desc.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
        else:
            low = float(spec.minimum) if spec.minimum is not None else -math.inf
            high = float(spec.maximum) if spec.maximum is not None else math.inf
            desc.floating_point_range = [FloatingPointRange(from_value=low, to_value=high,
                                                            step=0.0)]
    return desc


def declare_parameters(node, specs: Iterable[ParamSpec]) -> dict[str, ParamValue]:
    """Declare every spec on ``node`` with its descriptor; returns the checked values.

    Raises ``ParameterError`` (one line) for the first value that is refused, before the
    node loads anything else. Integers given for numbers are declared as floats.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values: dict[str, ParamValue] = {}
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
            values[spec.name] = check_value(spec, node.get_parameter(spec.name).value)
            continue
        except (InvalidParameterTypeException, InvalidParameterValueException):
            pass  # rclpy refused the user's value: read it untyped to say what is wrong
        node.declare_parameter(spec.name, None, ParameterDescriptor(dynamic_typing=True))
        given = node.get_parameter(spec.name).value
        value = check_value(spec, given)  # raises for everything but int -> float
        node.undeclare_parameter(spec.name)
        node.declare_parameter(spec.name, value, descriptor(spec), ignore_override=True)
        values[spec.name] = value
    for line in unknown_parameter_warnings(
            getattr(node, "_parameter_overrides", {}),  # rclpy's (Humble to Kilted)
            [name for name in getattr(node, "_parameters", {}) if node.has_parameter(name)]):
        node.get_logger().warning(line)
    return values


def unknown_parameter_warnings(given: Iterable[str], declared: Iterable[str]) -> list[str]:
    """One warning per given parameter the node does not have (rclpy ignores them silently:
    a typo such as ``max_depth:=80`` would otherwise go unnoticed), with the nearest name."""
    declared = sorted(set(declared))
    lines = []
    for name in sorted(set(given) - set(declared)):
        near = difflib.get_close_matches(name, declared, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        lines.append(f"parameter {name} is not a parameter of this node, ignored{hint}")
    return lines


def watch_live_parameters(node, specs: Iterable[ParamSpec],
                          apply: Callable[[dict[str, ParamValue]], None]) -> None:
    """Check ``ros2 param set`` of the live specs against the table and ``apply`` the checked
    values; read-only ones are refused by rclpy itself. Call after ``declare_parameters``.

    Where rclpy has pre-set callbacks (Iron and later), an integer set on a number parameter
    is turned into a float first, as at start-up; on Humble rclpy refuses it by type.
    """
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.parameter import Parameter

    by_name = {spec.name: spec for spec in specs}

    def coerce(parameters: list) -> list:
        out = []
        for param in parameters:
            spec = by_name.get(param.name)
            if (spec is not None and spec.kind in (NUMBER, NUMBERS)
                    and param.type_ in (Parameter.Type.INTEGER, Parameter.Type.INTEGER_ARRAY)):
                try:
                    param = Parameter(param.name, value=check_value(spec, param.value))
                except ParameterError:
                    pass  # left as it is: on_set refuses it with the table's words
            out.append(param)
        return out

    def on_set(parameters: list) -> SetParametersResult:
        checked: dict[str, ParamValue] = {}
        for param in parameters:
            spec = by_name.get(param.name)
            if spec is None:
                continue
            try:
                checked[param.name] = check_value(spec, param.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if checked:
            apply(checked)
        return SetParametersResult(successful=True)

    if hasattr(node, "add_pre_set_parameters_callback"):
        node.add_pre_set_parameters_callback(coerce)
    node.add_on_set_parameters_callback(on_set)
