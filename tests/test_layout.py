"""The package layout: each folder imports only what its docstring's "Imports:" line allows, and the public
short names (bitnet.inference, bitnet.export, bitnet.summary, bitnet.train) are the moved modules."""

import ast
import inspect
import importlib
import os
import pkgutil

import pytest

import bitnet

PACKAGE = os.path.dirname(os.path.abspath(bitnet.__file__))
FOUNDATION = ("errors", "faults")
ALIASES = {"inference": "deploy", "export": "deploy", "summary": "deploy", "train": "training"}


def folders():
    return sorted(name for name, is_package in ((m.name, m.ispkg) for m in pkgutil.iter_modules([PACKAGE])) if is_package)


def allowed(folder):
    docstring = importlib.import_module(f"bitnet.{folder}").__doc__
    lines = [line for line in docstring.splitlines() if line.startswith("Imports:")]
    assert len(lines) == 1, f"bitnet/{folder}/__init__.py's docstring needs one 'Imports:' line"
    return {name.strip() for name in lines[0].removeprefix("Imports:").split(",")} | {folder}


def bitnet_imports(path):
    """The first component under bitnet of every bitnet import in a file (bitnet.training.loop -> training)."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bitnet":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("bitnet.")}
    return found


def test_every_module_is_in_a_folder_or_a_foundation_or_an_alias():
    top = {m.name for m in pkgutil.iter_modules([PACKAGE]) if not m.ispkg}
    assert top == set(FOUNDATION) | set(ALIASES)
    assert folders() == ["core", "deploy", "input", "runs", "training", "workdir"]


@pytest.mark.parametrize("folder", folders())
def test_a_folder_imports_only_what_its_docstring_allows(folder):
    rules = allowed(folder)
    assert rules <= set(folders()) | set(FOUNDATION), f"bitnet/{folder}: unknown names in its Imports: line"
    for name in sorted(os.listdir(os.path.join(PACKAGE, folder))):
        if name.endswith(".py"):
            imported = bitnet_imports(os.path.join(PACKAGE, folder, name))
            assert imported <= rules, f"bitnet/{folder}/{name} imports {sorted(imported - rules)}, which {folder} may not"


def test_the_foundation_imports_no_folder():
    for name in FOUNDATION:
        assert bitnet_imports(os.path.join(PACKAGE, f"{name}.py")) <= set(FOUNDATION)


def test_the_import_rules_are_checked_for_real():
    assert bitnet_imports(os.path.join(PACKAGE, "training", "train.py")) >= {"input", "deploy", "workdir", "training"}
    assert "training" not in allowed("deploy")


@pytest.mark.parametrize("name, folder", sorted(ALIASES.items()))
def test_the_public_short_names_are_the_moved_modules(name, folder):
    short = importlib.import_module(f"bitnet.{name}")
    assert short is importlib.import_module(f"bitnet.{folder}.{name}")


def test_the_names_users_call_keep_working():
    from bitnet import export
    from bitnet.inference import packed_predict
    from bitnet.train import train_and_evaluate

    assert callable(packed_predict) and callable(export.load_npz) and callable(train_and_evaluate)


BELOW_THE_PLAN = (  # what the pipeline calls once the config is resolved (bitnet.training.plan.resolve)
    "bitnet.core", "bitnet.input", "bitnet.deploy", "bitnet.workdir",
    "bitnet.training.steps", "bitnet.training.loop", "bitnet.training.group", "bitnet.training.binarized", "bitnet.training.train",
)
TAKE_THE_CONFIG = {"bitnet.training.train": {"train_and_evaluate", "train_runs", "_checked"}}  # where it is resolved


def functions_of(module):
    """The functions and methods defined in `module`, by qualified name."""
    found = {}
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value):
            found[name] = value
        elif inspect.isclass(value):
            found.update({f"{name}.{key}": member for key, member in vars(value).items() if inspect.isfunction(member)})
    return found


def takes_a_config(function):
    return any(name in ("config", "configs") or "ConfigDict" in str(parameter.annotation)
               for name, parameter in inspect.signature(function).parameters.items())


def test_nothing_below_the_plan_reads_the_config():
    modules = []
    for name in BELOW_THE_PLAN:
        package = importlib.import_module(name)
        modules.append(package)
        if hasattr(package, "__path__"):
            modules += [importlib.import_module(f"{name}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    checked = 0
    for module in modules:
        for qualified, function in functions_of(module).items():
            checked += 1
            allowed = TAKE_THE_CONFIG.get(module.__name__, set())
            assert qualified in allowed or not takes_a_config(function), f"{module.__name__}.{qualified} takes a config"
    assert checked > 100
    from bitnet.training import train

    assert all(takes_a_config(getattr(train, name)) for name in TAKE_THE_CONFIG["bitnet.training.train"])  # the scan sees them
