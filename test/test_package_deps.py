"""package.xml declares every third-party module the installed code imports, so that
``rosdep install --from-paths src`` alone gives a package whose console scripts start.

Every module of the installed package (``depth_ros/**``) and every launch file is read with
``ast``; each top-level import that is neither the standard library nor depth_ros itself must
map (MODULE_KEYS) to a rosdep key that package.xml declares as an exec_depend, or be one of
the OPTIONAL modules, which package.xml names in a comment. A new import without a key
fails here.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import depth_ros

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(depth_ros.__file__).resolve().parent
PACKAGE_XML = REPO / "package.xml"

# Import name -> rosdep key. ROS packages are their own keys; Python packages use the keys
# of ros/rosdistro's rosdep/python.yaml (the -pip ones install from PyPI).
MODULE_KEYS = {
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces",
    "diagnostic_msgs": "diagnostic_msgs",
    "geometry_msgs": "geometry_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "rcl_interfaces": "rcl_interfaces",
    "rclpy": "rclpy",
    "rosgraph_msgs": "rosgraph_msgs",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "tf2_msgs": "tf2_msgs",
    "tf2_ros": "tf2_ros",
    "cv2": "python3-opencv",
    "numpy": "python3-numpy",
    "tqdm": "python3-tqdm",
    "yaml": "python3-yaml",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
}
# Imported only where present, with a fallback or a clear message (package.xml says so).
OPTIONAL = {"torch", "tensorrt", "onnx", "embreex", "h5py"}


def third_party_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "depth_ros":
                    found.setdefault(top, set()).add(path.name)
    return found


def exec_depends(package_xml: Path) -> set[str]:
    """The exec_depend (and depend) keys of a package.xml."""
    root = ET.parse(package_xml).getroot()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag)}


def comments(package_xml: Path) -> str:
    """All comment text of a package.xml."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.parse(package_xml, parser).getroot()
    return "\n".join(e.text or "" for e in root.iter() if e.tag is ET.Comment)


def undeclared(paths: list[Path], package_xml: Path) -> list[str]:
    """One problem per imported module without a declared key (or an optional mention)."""
    declared, notes = exec_depends(package_xml), comments(package_xml)
    problems = []
    for module, files in sorted(third_party_imports(paths).items()):
        where = ", ".join(sorted(files))
        if module in OPTIONAL:
            if module not in notes:
                problems.append(f"optional {module} ({where}) is not named in a package.xml "
                                "comment")
        elif module not in MODULE_KEYS:
            problems.append(f"{module} ({where}) has no rosdep key in MODULE_KEYS")
        elif MODULE_KEYS[module] not in declared:
            problems.append(f"{module} ({where}): package.xml lacks "
                            f"<exec_depend>{MODULE_KEYS[module]}</exec_depend>")
    return problems


def installed_sources() -> list[Path]:
    """Every module of the package and every launch file."""
    return sorted(PACKAGE_DIR.rglob("*.py")) + sorted((REPO / "launch").glob("*.launch.py"))


def test_every_import_of_the_installed_code_is_declared():
    sources = installed_sources()
    assert len(sources) > 50 and any(p.name == "mono_depth_node.py" for p in sources)
    assert undeclared(sources, PACKAGE_XML) == []


def test_the_runtime_imports_are_all_there():
    # What the console scripts need; a reader that missed them would pass vacuously.
    found = set(third_party_imports(installed_sources()))
    assert {"rclpy", "numpy", "cv2", "tqdm", "onnxruntime", "rosbags",
            "builtin_interfaces", "ament_index_python", "launch_ros"} <= found, found


@pytest.mark.parametrize(("source", "problem"), [
    ("import scipy.ndimage\n", "scipy (new.py) has no rosdep key in MODULE_KEYS"),
    ("from tqdm import tqdm\n", "tqdm (new.py): package.xml lacks "
                                "<exec_depend>python3-tqdm</exec_depend>"),
    ("def f():\n    import h5py\n", None),  # optional and named in the comment: fine
    ("import json, os.path\nfrom . import sibling\n", None),  # stdlib and relative
])
def test_a_new_import_without_a_key_fails(tmp_path, source, problem):
    package_xml = tmp_path / "package.xml"
    text = PACKAGE_XML.read_text()
    if problem and "lacks" in problem:
        text = text.replace("<exec_depend>python3-tqdm</exec_depend>", "")
    package_xml.write_text(text)
    module = tmp_path / "new.py"
    module.write_text(source)
    assert undeclared([module], package_xml) == ([problem] if problem else [])


def test_optional_module_must_be_named_in_package_xml(tmp_path):
    package_xml = tmp_path / "package.xml"
    package_xml.write_text(PACKAGE_XML.read_text().replace("embreex", "(ray tracer)"))
    module = tmp_path / "shadows.py"
    module.write_text("import embreex\n")
    assert undeclared([module], package_xml) == [
        "optional embreex (shadows.py) is not named in a package.xml comment"]


def test_rviz2_is_not_a_run_dependency():
    # Headless robots (Jetson) must not pull a GUI stack; rviz:=true checks for it instead.
    assert "rviz2" not in exec_depends(PACKAGE_XML)
