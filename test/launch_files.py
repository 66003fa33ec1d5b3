"""Launch files, setup.py and node modules read as Python syntax, for what a real run of a
launch file cannot check (test_launch_static.py, test_rviz_config.py).

test_launch.py runs every launch file for real (``ros2 launch`` on a colcon install). This
reader is for the rest: arguments declared but never used, the RViz config against the topics
a launch file wires, node modules against their declared topic tables. It reads launch
arguments with their defaults and ``Node`` actions (package, executable, name, parameters,
remappings, arguments), and resolves values the way ``launch`` would with every argument at
its default: string literals, ``LaunchConfiguration``, lists of substitutions (concatenated),
``PathJoinSubstitution`` and ``FindPackageShare('depth_ros')``. Anything else is reported as
unresolvable rather than guessed.
"""

from __future__ import annotations

import ast
import importlib
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "depth_ros"
SHARE = f"<share:{PACKAGE}>"


class UnresolvableError(ValueError):
    """A launch expression this reader cannot evaluate statically."""


def call_name(node: ast.AST) -> str | None:
    """The called name of a Call node (``Node`` for both ``Node(...)`` and ``x.Node(...)``)."""
    if not isinstance(node, ast.Call):
        return None
    return getattr(node.func, "id", getattr(node.func, "attr", None))


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Every call of ``name`` under tree, in source order."""
    found = [n for n in ast.walk(tree) if call_name(n) == name]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def kwargs(call: ast.Call) -> dict[str, ast.expr]:
    """A call's keyword arguments by name."""
    return {k.arg: k.value for k in call.keywords if k.arg is not None}


def _literal(node: ast.expr, what: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise UnresolvableError(f"{what} must be a string literal, got {ast.unparse(node)}")


@dataclass
class NodeAction:
    """One ``launch_ros.actions.Node`` of a launch file."""

    package: str
    executable: str
    name: str | None
    lineno: int
    remappings: list[tuple[str, ast.expr]]
    parameters: list[ast.expr]
    arguments: list[ast.expr]


@dataclass
class LaunchFile:
    """A parsed launch file: its arguments, variables and nodes."""

    path: Path
    tree: ast.Module
    arguments: dict[str, ast.expr | None] = field(default_factory=dict)
    variables: dict[str, ast.expr] = field(default_factory=dict)
    nodes: list[NodeAction] = field(default_factory=list)

    def resolve(self, node: ast.expr, _seen: frozenset[str] = frozenset()) -> str:
        """The string ``node`` becomes when launched with every argument at its default."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in self.variables:
                raise UnresolvableError(f"{self.path.name}:{node.lineno}: unknown name {node.id}")
            return self.resolve(self.variables[node.id], _seen)
        if isinstance(node, (ast.List, ast.Tuple)):
            return "".join(self.resolve(e, _seen) for e in node.elts)
        name = call_name(node)
        if name == "LaunchConfiguration":
            arg = _literal(node.args[0], "LaunchConfiguration's name")
            if arg not in self.arguments:
                raise UnresolvableError(f"{self.path.name}:{node.lineno}: LaunchConfiguration "
                                   f"{arg!r} has no DeclareLaunchArgument")
            default = self.arguments[arg]
            if default is None:
                raise UnresolvableError(f"{self.path.name}: argument {arg!r} has no default")
            if arg in _seen:
                raise UnresolvableError(f"{self.path.name}: argument {arg!r} refers to itself")
            return self.resolve(default, _seen | {arg})
        if name == "PathJoinSubstitution":
            (parts,) = node.args
            if not isinstance(parts, (ast.List, ast.Tuple)):
                raise UnresolvableError(f"PathJoinSubstitution of {ast.unparse(parts)}")
            return os.path.join(*(self.resolve(p, _seen) for p in parts.elts))
        if name == "FindPackageShare":
            package = _literal(node.args[0], "FindPackageShare's package")
            if package != PACKAGE:
                raise UnresolvableError(f"FindPackageShare({package!r}): not this package")
            return SHARE
        raise UnresolvableError(f"{self.path.name}:{getattr(node, 'lineno', '?')}: cannot resolve "
                           f"{ast.unparse(node)}")

    def used_arguments(self) -> set[str]:
        """Arguments whose LaunchConfiguration reaches an action (not just a dead variable).

        ``LaunchConfiguration(name) for name in NAMES`` counts every string of the
        module-level tuple ``NAMES``.
        """
        loaded = {n.id for n in ast.walk(self.tree)
                  if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assigned = {id(value): target for target, value in self.variables.items()}
        loops = {g.target.id: g.iter.id for n in ast.walk(self.tree)
                 if isinstance(n, (ast.ListComp, ast.GeneratorExp, ast.DictComp))
                 for g in n.generators
                 if isinstance(g.target, ast.Name) and isinstance(g.iter, ast.Name)}
        used = set()
        for call in calls(self.tree, "LaunchConfiguration"):
            target = assigned.get(id(call))
            if target is not None and target not in loaded:
                continue
            (name,) = call.args
            if isinstance(name, ast.Name) and loops.get(name.id) in self.variables:
                names = self.variables[loops[name.id]]
                used.update(_literal(e, "argument name") for e in getattr(names, "elts", [names]))
            else:
                used.add(_literal(name, "LaunchConfiguration's name"))
        return used


def _pairs(node: ast.expr, what: str) -> list[tuple[ast.expr, ast.expr]]:
    """(key, value) pairs of a list of 2-tuples, a dict, or ``dict.items()``."""
    if isinstance(node, ast.Call) and call_name(node) == "items":
        node = node.func.value
    if isinstance(node, ast.Dict):
        return list(zip(node.keys, node.values, strict=True))
    if isinstance(node, (ast.List, ast.Tuple)):
        pairs = []
        for element in node.elts:
            if not (isinstance(element, (ast.Tuple, ast.List)) and len(element.elts) == 2):
                raise UnresolvableError(f"{what}: expected (key, value), got "
                                        f"{ast.unparse(element)}")
            pairs.append((element.elts[0], element.elts[1]))
        return pairs
    raise UnresolvableError(f"{what}: expected a list of pairs, got {ast.unparse(node)}")


@cache
def parse_launch(path: Path) -> LaunchFile:
    """Parse a launch file (cached per path)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    launch = LaunchFile(path=path, tree=tree)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            launch.variables[node.targets[0].id] = node.value
    for call in calls(tree, "DeclareLaunchArgument"):
        name = _literal(call.args[0], "DeclareLaunchArgument's name")
        default = kwargs(call).get("default_value", call.args[1] if len(call.args) > 1 else None)
        if name in launch.arguments:
            raise UnresolvableError(f"{path.name}: argument {name!r} declared twice")
        launch.arguments[name] = default
    for call in calls(tree, "Node"):
        kw = kwargs(call)
        remaps = [(_literal(k, "remapping source"), v)
                  for k, v in _pairs(kw["remappings"], "remappings")] if "remappings" in kw else []
        params = kw.get("parameters", ast.List(elts=[]))
        arguments = kw.get("arguments", ast.List(elts=[]))
        for value, what in ((params, "parameters"), (arguments, "arguments")):
            if not isinstance(value, (ast.List, ast.Tuple)):
                raise UnresolvableError(f"{path.name}:{call.lineno}: {what} must be a list "
                                        "literal")
        launch.nodes.append(NodeAction(
            package=_literal(kw["package"], "Node package"),
            executable=_literal(kw["executable"], "Node executable"),
            name=_literal(kw["name"], "Node name") if "name" in kw else None,
            lineno=call.lineno, remappings=remaps, parameters=list(params.elts),
            arguments=list(arguments.elts)))
    return launch


def launch_files() -> list[Path]:
    """Every launch file of the package."""
    return sorted((REPO / "launch").glob("*.launch.py"))


@dataclass(frozen=True)
class Remap:
    """One remapping as launched: which node, its own topic name and the resolved target."""

    launch_file: str
    executable: str
    topic: str
    target: str


def remaps(path: Path) -> list[Remap]:
    """Every remapping of this package's nodes in one launch file, arguments at defaults."""
    launch = parse_launch(path)
    return [Remap(path.name, node.executable, topic, launch.resolve(target))
            for node in launch.nodes if node.package == PACKAGE
            for topic, target in node.remappings]


# setup.py


def _setup_call() -> tuple[ast.Call, dict[str, str]]:
    tree = ast.parse((REPO / "setup.py").read_text())
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
    (setup,) = calls(tree, "setup")
    return setup, constants


def _string(node: ast.expr, constants: dict[str, str]) -> str:
    """A string literal or an f-string over module-level string constants."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                parts.append(constants[value.value.id])
            else:
                raise UnresolvableError(f"setup.py: cannot evaluate {ast.unparse(node)}")
        return "".join(parts)
    raise UnresolvableError(f"setup.py: cannot evaluate {ast.unparse(node)}")


@cache
def console_scripts() -> dict[str, str]:
    """setup.py's console scripts: name -> ``module:function``."""
    setup, constants = _setup_call()
    entry_points = kwargs(setup)["entry_points"]
    scripts = {}
    for key, value in zip(entry_points.keys, entry_points.values, strict=True):
        if ast.literal_eval(key) == "console_scripts":
            for element in value.elts:
                name, _, target = _string(element, constants).partition("=")
                scripts[name.strip()] = target.strip()
    return scripts


# Node modules


@dataclass(frozen=True)
class NodeInterface:
    """What a node module declares and what its source creates.

    ``subscribed``/``published`` map each topic its source creates (the module and the
    ``depth_ros.ros`` modules it imports, e.g. a base class) to the message type's name;
    ``declared_*`` are the module's SUBSCRIBED_TOPICS/PUBLISHED_TOPICS tables (None without).
    """

    module: str
    node_name: str | None
    parameters: dict[str, object] | None
    subscribed: dict[str, str]
    published: dict[str, str]
    declared_subscribed: tuple[str, ...] | None
    declared_published: tuple[str, ...] | None

    def message_type(self, topic: str) -> str:
        """The message type's name of one of the node's topics."""
        return {**self.subscribed, **self.published}[topic]

    def relative_topics(self) -> set[str]:
        """The node's relative topic names (those a launch file remaps; not ``~/`` ones)."""
        return {t for t in (*self.subscribed, *self.published) if t[0] not in "/~"}


def _module_file(module: str) -> Path:
    return REPO / (module.replace(".", "/") + ".py")


def _created_topics(module: str) -> tuple[dict[str, str], dict[str, str]]:
    subscribed: dict[str, str] = {}
    published: dict[str, str] = {}
    tree = ast.parse(_module_file(module).read_text())
    sources = [tree]
    for node in tree.body:
        if (isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith(f"{PACKAGE}.ros.")
                and _module_file(node.module).is_file()):
            sources.append(ast.parse(_module_file(node.module).read_text()))
    for source in sources:
        for kind, table in (("create_subscription", subscribed),
                            ("create_publisher", published)):
            for call in calls(source, kind):
                if len(call.args) < 2:
                    continue
                topic = call.args[1]
                if not (isinstance(topic, ast.Constant) and isinstance(topic.value, str)):
                    raise UnresolvableError(f"{module}: {kind} with a computed topic name "
                                       f"{ast.unparse(topic)}; declare the topics in a table")
                table[topic.value] = ast.unparse(call.args[0])
    return subscribed, published


@cache
def node_interface(executable: str) -> NodeInterface:
    """The interface of the depth_ros console script ``executable``."""
    module_name = console_scripts()[executable].partition(":")[0]
    module = importlib.import_module(module_name)
    subscribed, published = _created_topics(module_name)
    declared = [getattr(module, a, None) for a in ("SUBSCRIBED_TOPICS", "PUBLISHED_TOPICS")]
    return NodeInterface(module=module_name, node_name=getattr(module, "NODE_NAME", None),
                         parameters=getattr(module, "PARAMETERS", None),
                         subscribed=subscribed, published=published,
                         declared_subscribed=None if declared[0] is None else tuple(declared[0]),
                         declared_published=None if declared[1] is None else tuple(declared[1]))
