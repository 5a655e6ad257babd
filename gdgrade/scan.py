"""Static scan of submitted notebooks for code that tampers with grading.

The attacks that in-process tests cannot stop (see ``gdgrade.grading``): IPython hooks
(``set_custom_exc``, AST/input transformers, shell method overrides, event callbacks),
trace/profile hooks and frame inspection, ``sys.modules``, ``importlib``/``inspect``/``gc``/
``ctypes``/``builtins``, imports of gdlib/gdgrade/torch/scipy/sklearn, ``exec``/``eval``/
``setattr``/``vars`` (called or merely named), ``getattr`` with a computed or private name,
``__dict__``, ``__class__``, ``__globals__`` (also as strings), private ``_names`` of any
imported module, the grading module used other than by reading and calling its public
functions (an alias ``g = grading``, ``vars(grading)``, ``f(grading)``, ``grading.x.y``),
assignments to attributes of numpy, builtins, sys, math, gdlib, gdgrade, torch or the grading
module (also through an alias: ``t = np.testing; t.assert_allclose = ...``), and rebinding a
name the locked cells of the same notebook define (``check_steps = lambda *a, **k: None``; see
``course_names``). Cells whose source is identical to a locked cell of the course are skipped:
that is the instructor's code (their imports still count, e.g. ``from gdgrade import grading``).

A finding is a reason to look, not proof of cheating: a student may import ``inspect`` out of
curiosity. Conversely the scan is static: code built at run time from strings (``exec`` of a
decoded payload) hides what it does, which is why ``exec``, ``eval`` and ``compile`` are
findings themselves. ``python -m gdgrade scan`` runs it from the command line;
``gdgrade.nbgrader_plugins.FlagSuspiciousCode`` during ``nbgrader autograde``.
"""

import ast
import json
from dataclasses import dataclass
from pathlib import Path

# Modules an exercise answer has no reason to import.
SUSPICIOUS_MODULES = {
    "importlib": "can import modules behind the grader's back",
    "inspect": "can read the grader's frames and source",
    "gc": "can reach any object, including the grader's",
    "ctypes": "can rewrite memory",
    "builtins": "can replace builtin functions",
    "ast": "is how AST transformers that rewrite test cells are written",
    "IPython": "can install kernel hooks",
    "gdlib": "holds the reference implementation the tests compare with",
    "gdgrade": "is the grader",
    "torch": "computes the answer",
    "scipy": "computes the answer",
    "sklearn": "computes the answer",
    "jax": "computes the answer",
    "tensorflow": "computes the answer",
}

# Attribute names whose use (read or write) in an answer means kernel or frame tampering.
SUSPICIOUS_ATTRIBUTES = {
    "set_custom_exc": "installs a custom exception handler (can swallow test failures)",
    "custom_exceptions": "touches IPython's custom exception handling",
    "CustomTB": "touches IPython's custom exception handling",
    "ast_transformers": "installs an AST transformer (can rewrite test cells)",
    "input_transformers_post": "installs an input transformer (can rewrite test cells)",
    "input_transformers_cleanup": "installs an input transformer (can rewrite test cells)",
    "input_transformer_manager": "touches IPython's input transformation",
    "showtraceback": "touches IPython's error display",
    "_showtraceback": "touches IPython's error display",
    "InteractiveTB": "touches IPython's error display",
    "run_cell": "touches how IPython runs cells",
    "run_cell_async": "touches how IPython runs cells",
    "run_code": "touches how IPython runs cells",
    "run_ast_nodes": "touches how IPython runs cells",
    "excepthook": "touches the exception hook",
    "events": "touches IPython's event callbacks",
    "settrace": "installs a trace function (can alter how test code runs)",
    "setprofile": "installs a profile function",
    "gettrace": "reads the trace function",
    "getprofile": "reads the profile function",
    "_getframe": "inspects stack frames",
    "_current_frames": "inspects stack frames",
    "f_back": "inspects stack frames",
    "f_locals": "inspects stack frames",
    "f_globals": "inspects stack frames",
    "tb_frame": "inspects stack frames",
    "gi_frame": "inspects stack frames",
    "__builtins__": "reaches the builtins",
    "__globals__": "reaches a function's globals",
    "__code__": "reaches or replaces a function's code",
    "__closure__": "reaches a function's closure",
    "__subclasses__": "walks the class hierarchy",
    "__import__": "imports behind the grader's back",
    "__dict__": "reaches an object's namespace (can patch a module)",
    "__class__": "reaches or replaces an object's class",
    "__getattribute__": "reaches or replaces how attributes are read",
    "__setattr__": "reaches or replaces how attributes are set",
    "__defaults__": "reaches or replaces a function's default arguments",
    "__kwdefaults__": "reaches or replaces a function's default arguments",
}

# Calls of these builtins in an answer are findings.
SUSPICIOUS_CALLS = {
    "exec": "executes code built at run time",
    "eval": "evaluates code built at run time",
    "compile": "compiles code built at run time",
    "__import__": "imports behind the grader's back",
    "setattr": "sets attributes by name (can patch modules)",
    "delattr": "deletes attributes by name (can patch modules)",
    "globals": "reaches the notebook's globals (can rebind the grader's names)",
    "vars": "reaches a namespace (can patch a module)",
}

# Modules (by the name they are imported as) whose attributes an answer must not assign.
PROTECTED_MODULES = {
    "numpy", "builtins", "sys", "math", "gdlib", "gdgrade", "torch", "IPython", "threading", "copy",
}
# Names of the course's own objects that answers must not rebind.
PROTECTED_NAMES = {"grading", "np", "numpy", "gdlib", "gdgrade", "get_ipython"}


@dataclass(frozen=True)
class Finding:
    """One suspicious line: where it is and why it matters."""

    path: str
    cell: int | None  # index of the notebook cell (None for a .py file)
    line: int
    reason: str
    code: str

    def __str__(self) -> str:
        where = f"{self.path}" + (f": cell {self.cell}" if self.cell is not None else "")
        return f"{where}, line {self.line}: {self.reason}: {self.code.strip()}"


# Magics that run their argument (or their cell body) as Python code.
CODE_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
# Magics that run or load code from elsewhere, which a scan of the notebook cannot see.
FILE_MAGICS = {
    "run": "runs code from a file",
    "load": "loads code from a file",
    "load_ext": "loads an IPython extension",
    "writefile": "writes a file (which later code could run)",
}


def _magic_call(node):
    """``(magic name, code string or None)`` for ``get_ipython().run_line_magic(...)`` and
    ``run_cell_magic`` calls (what IPython turns ``%magic`` lines into), else None."""
    func = node.func
    if not (isinstance(func, ast.Attribute)
            and func.attr in ("run_line_magic", "run_cell_magic") and node.args):
        return None
    name = node.args[0]
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
        return None
    position = 1 if func.attr == "run_line_magic" else 2
    code = node.args[position] if len(node.args) > position else None
    text = code.value if isinstance(code, ast.Constant) and isinstance(code.value, str) else None
    return name.value, text


def _python_source(source: str) -> str:
    """Cell source with IPython syntax (magics, !shell) turned into plain Python."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython is installed with nbgrader
        return source
    return TransformerManager().transform_cell(source)


def _root_name(node) -> str | None:
    """The name an attribute/subscript chain starts from: ``np`` for ``np.testing.x[0]``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _import_bindings(node) -> list:
    """``(node, local name, imported path)`` for an import statement."""
    if isinstance(node, ast.Import):
        return [(node, alias.asname or alias.name.split(".")[0],
                 alias.name if alias.asname else alias.name.split(".")[0])
                for alias in node.names]
    return [(node, alias.asname or alias.name, f"{node.module or ''}.{alias.name}")
            for alias in node.names if alias.name != "*"]


def module_bindings(tree) -> list:
    """``(node, name, path)`` for every name a cell binds or deletes in the notebook's global
    namespace: assignment, ``for``/``with``/``except``/``match``/walrus targets, ``def`` and
    ``class``, imports (``path`` is the imported module or object, ``None`` otherwise), ``del``,
    and the names a function declares ``global`` (it can rebind them). Comprehension variables
    and a function's own locals are not global and do not count."""
    found = []

    def visit(node):
        if isinstance(node, _DEFINITIONS):
            found.append((node, node.name, None))
            found.extend((inner, name, None) for inner in ast.walk(node)
                         if isinstance(inner, ast.Global) for name in inner.names)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend(_import_bindings(node))
            return
        if isinstance(node, _COMPREHENSIONS):  # only a walrus inside binds outside it
            found.extend((inner, inner.target.id, None) for inner in ast.walk(node)
                         if isinstance(inner, ast.NamedExpr))
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append((node, node.id, None))
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            found.append((node, node.name, None))
        elif isinstance(node, ast.MatchMapping) and node.rest:
            found.append((node, node.rest, None))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _parse(source: str):
    """The AST of a cell (IPython syntax turned into Python), or None when it does not parse."""
    try:
        return ast.parse(_python_source(source))
    except SyntaxError:
        return None


def course_names(sources) -> dict:
    """Names the locked cells (``sources``) of one notebook define, which answers must not
    rebind: ``{name: frozenset of imported paths}`` (``None`` in the set for a binding that is
    not an import).

    A name counts when a locked cell binds it by ``def``, ``class`` or import (the course's
    functions and the grader's helpers), or binds it otherwise and a locked cell that does not
    bind it reads it (data passed from cell to cell, e.g. the worked example's arrays). A
    temporary that a grade cell binds and uses itself does not: answers may reuse its name.
    """
    paths: dict = {}
    functions, shared = set(), set()
    for source in sources:
        tree = _parse(source)
        if tree is None:
            continue
        bound = set()
        for node, name, path in module_bindings(tree):
            paths.setdefault(name, set()).add(path)
            bound.add(name)
            if path is not None or isinstance(node, _DEFINITIONS):
                functions.add(name)
        shared |= {node.id for node in ast.walk(tree)
                   if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)} - bound
    return {name: frozenset(found) for name, found in paths.items()
            if name in functions or name in shared}


GRADING_MODULE = "gdgrade.grading"


def default_aliases() -> dict:
    """The names every exercise notebook binds in its locked setup cell: ``np`` and
    ``grading`` (``from gdgrade import grading``)."""
    return {"np": "numpy", "grading": GRADING_MODULE}


def _is_private(name: str) -> bool:
    """``_name`` but not ``__name__``: a module's internals, not its interface."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Scanner(ast.NodeVisitor):
    """Collects ``(line, reason)`` for one cell; ``aliases`` maps local names to the modules or
    objects they were imported as (or assigned from), ``names`` holds the names the course's
    locked cells define (``course_names``); ``tree`` is the cell's AST (to know each node's
    parent)."""

    def __init__(self, aliases: dict, names: dict | None = None, tree=None):
        self.aliases = aliases
        self.names = names or {}
        self.found: list[tuple[int, str]] = []
        self.parents = {child: node for node in ast.walk(tree) if tree is not None
                        for child in ast.iter_child_nodes(node)}

    def flag(self, node, reason: str) -> None:
        self.found.append((node.lineno, reason))

    def _imported(self, node, module: str) -> None:
        top = module.split(".")[0]
        if top in SUSPICIOUS_MODULES:
            self.flag(node, f"imports {module}, which {SUSPICIOUS_MODULES[top]}")

    def visit_Import(self, node):
        for alias in node.names:
            self._imported(node, alias.name)
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else alias.name.split(".")[0]
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self._imported(node, module)
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name in SUSPICIOUS_ATTRIBUTES:
                self.flag(node, f"imports {full}, which {SUSPICIOUS_ATTRIBUTES[alias.name]}")
            elif _is_private(alias.name):
                self.flag(node, f"imports {full}, a private name of {module} (its internals, "
                                f"not its interface)")
            self.aliases[alias.asname or alias.name] = full
        self.generic_visit(node)

    def _dotted(self, node) -> str | None:
        """The module path a name or attribute chain stands for (``gdgrade.grading._SNAPSHOTS``
        for ``grading._SNAPSHOTS``), when it starts from an imported or aliased name."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def _is_base_of(self, node) -> bool:
        """Whether ``node`` is the object of an attribute read or a subscript (``x`` of
        ``x.y`` or ``x[0]``)."""
        parent = self.parents.get(node)
        return isinstance(parent, (ast.Attribute, ast.Subscript)) and parent.value is node

    def _grading_as_value(self, node) -> None:
        """The grading module may only be read from (``grading.check_array(...)``): used as a
        value it can be aliased, passed on, or handed to ``vars``/``setattr``."""
        if (isinstance(getattr(node, "ctx", None), ast.Load)
                and self._dotted(node) == GRADING_MODULE and not self._is_base_of(node)):
            self.flag(node, "uses the grading module itself as a value (an alias, an argument, "
                            "vars() or setattr() reach the grader's internals)")

    def visit_Attribute(self, node):
        base = self._dotted(node.value)
        if node.attr in SUSPICIOUS_ATTRIBUTES:
            self.flag(node, f".{node.attr} {SUSPICIOUS_ATTRIBUTES[node.attr]}")
        elif node.attr == "modules" and self._module_of(node.value) == "sys":
            self.flag(node, "sys.modules reaches every loaded module, the grader's included")
        elif base is not None and _is_private(node.attr):
            whose = "the grader" if base == GRADING_MODULE else "an imported module"
            self.flag(node, f"reaches {base}.{node.attr}, a private name of {whose} (its "
                            f"internals, not its interface)")
        elif base == GRADING_MODULE and self._is_base_of(node):
            self.flag(node, f"reaches inside {base}.{node.attr} (the grader's functions are "
                            f"only to be called)")
        self._grading_as_value(node)
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in ("__builtins__", "__import__"):
            self.flag(node, f"{node.id} {SUSPICIOUS_ATTRIBUTES[node.id]}")
        elif node.id in SUSPICIOUS_CALLS and isinstance(node.ctx, ast.Load):
            parent = self.parents.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node):  # (visit_Call)
                self.flag(node, f"refers to {node.id}, which {SUSPICIOUS_CALLS[node.id]}")
        self._grading_as_value(node)
        self.generic_visit(node)

    def visit_Constant(self, node):
        # An attribute name as a string: getattr(f, "__globals__"), attrgetter("__dict__").
        if (isinstance(node.value, str) and node.value.startswith("_")
                and node.value in SUSPICIOUS_ATTRIBUTES):
            self.flag(node, f"names the attribute {node.value!r}, which "
                            f"{SUSPICIOUS_ATTRIBUTES[node.value]}")

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id in SUSPICIOUS_CALLS:
            self.flag(node, f"{node.func.id}() {SUSPICIOUS_CALLS[node.func.id]}")
        if (isinstance(node.func, ast.Name) and node.func.id == "getattr"
                and len(node.args) >= 2):
            name = node.args[1]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.flag(node, "getattr() with an attribute name computed at run time (the "
                                "scan cannot see what it reaches)")
            elif name.value.startswith("_"):
                self.flag(node, f"getattr() of the private or special attribute "
                                f"{name.value!r}")
        magic = _magic_call(node)
        if magic is not None:
            name, code = magic
            if name in FILE_MAGICS:
                self.flag(node, f"%{name} {FILE_MAGICS[name]}")
            elif name in CODE_MAGICS and code is not None:
                # %time / %%capture ... run their argument as code: scan it too.
                for _, reason in scan_source(code, self.aliases, self.names):
                    self.flag(node, reason)
        self.generic_visit(node)

    def _module_of(self, node) -> str | None:
        root = _root_name(node)
        if root is None:
            return None
        return self.aliases.get(root, root).split(".")[0]

    def _target(self, target, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element, verb)
        elif isinstance(target, ast.Starred):
            self._target(target.value, verb)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            module = self._module_of(target)
            root = _root_name(target)
            if self._dotted(target.value) == GRADING_MODULE:
                shown = root if root == "grading" else f"{root} (the grading module)"
                self.flag(target, f"{verb} an attribute of {shown}")
            elif module in PROTECTED_MODULES:
                self.flag(target, f"{verb} an attribute of {module}")
            elif root in PROTECTED_NAMES:
                self.flag(target, f"{verb} an attribute of {root}")
        elif isinstance(target, ast.Name) and target.id in PROTECTED_NAMES - {"np", "numpy"}:
            self.flag(target, f"rebinds {target.id}, a name the tests use")

    def visit_Assign(self, node):
        for target in node.targets:
            self._target(target, "assigns")
        # t = np.testing: t.assert_allclose = ... assigns an attribute of numpy.
        value = self._dotted(node.value)
        if value is not None:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.aliases[target.id] = value
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._target(node.target, "assigns")
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._target(node.target, "assigns")
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self._target(target, "deletes")
        self.generic_visit(node)


    def rebound_course_names(self, tree) -> None:
        """Flag bindings of names the course's locked cells define (an import of the same
        module or object, e.g. ``import numpy as np``, is fine)."""
        for node, name, path in module_bindings(tree):
            course_paths = self.names.get(name)
            if course_paths is None or (path is not None and path in course_paths):
                continue
            verb = "deletes" if isinstance(getattr(node, "ctx", None), ast.Del) else "rebinds"
            self.flag(node, f"{verb} {name}, a name defined by the course's locked cells "
                            f"(the tests may use it)")


def scan_source(source: str, aliases: dict | None = None,
                names: dict | None = None) -> list[tuple[int, str]]:
    """``(line, reason)`` for every suspicious construct of one cell or file.

    ``aliases`` (local name -> module) carries imports from earlier cells and is updated.
    ``names``: the names the course's locked cells define (``course_names``), which the code
    must not rebind. Code that does not parse yields nothing (it fails its tests anyway).
    """
    aliases = default_aliases() if aliases is None else aliases
    tree = _parse(source)
    if tree is None:
        return []
    scanner = _Scanner(aliases, names, tree)
    scanner.visit(tree)
    scanner.rebound_course_names(tree)
    return sorted(set(scanner.found))


def _cell_source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def scan_notebook(nb: dict, trusted: set | frozenset = frozenset(), path: str = "",
                  trusted_ids: set | frozenset = frozenset(), names: dict | None = None) -> list:
    """Findings in the code cells of notebook ``nb`` (a dict).

    Skips cells whose source is in ``trusted`` and, when given, cells whose nbgrader
    ``grade_id`` is in ``trusted_ids`` (during autograde: locked cells known to the gradebook,
    whose source nbgrader has just restored); their imports still count as the names they
    bind (``from gdgrade import grading``). ``names``: the names the locked cells of this
    notebook in the course define (``course_names``); a cell that rebinds one is a finding.
    """
    findings = []
    aliases = default_aliases()
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = _cell_source(cell)
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if source.strip() in trusted or (grade_id is not None and grade_id in trusted_ids):
            scan_source(source, aliases)  # the course's own code: only its aliases matter
            continue
        lines = _python_source(source).splitlines()
        for line, reason in scan_source(source, aliases, names):
            code = lines[line - 1] if 0 < line <= len(lines) else ""
            findings.append(Finding(path, index, line, reason, code))
    return findings


def _read_notebook(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _locked_code(*directories: Path) -> dict:
    """``{notebook file name: [sources of its locked code cells]}`` for the notebooks under
    ``directories`` (a release and its solutions share file names: their cells are merged)."""
    cells: dict = {}
    for directory in directories:
        for path in sorted(Path(directory).rglob("*.ipynb")):
            sources = cells.setdefault(path.name, [])
            for cell in _read_notebook(path).get("cells", []):
                if (cell.get("cell_type") == "code"
                        and cell.get("metadata", {}).get("nbgrader", {}).get("locked")):
                    sources.append(_cell_source(cell).strip())
    return cells


def locked_sources(*directories: Path) -> set:
    """Sources of the locked cells of every notebook under ``directories`` (the course's code)."""
    return {source for sources in _locked_code(*directories).values() for source in sources}


def locked_names(*directories: Path) -> dict:
    """``{notebook file name: course_names(its locked cells)}`` for the notebooks under
    ``directories``; a submission is matched to its notebook by file name."""
    return {name: course_names(sources) for name, sources in _locked_code(*directories).items()}


def scan_paths(paths, trusted: set | frozenset = frozenset(), names: dict | None = None) -> list:
    """Findings in the notebooks and .py files at ``paths`` (directories searched recursively).

    ``names``: ``locked_names`` of the course, so that a notebook's cells that rebind a name
    its locked cells define are findings."""
    findings = []
    names = names or {}
    for path in map(Path, paths):
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if ".ipynb_checkpoints" in file.parts:
                continue
            if file.suffix == ".ipynb":
                findings += scan_notebook(_read_notebook(file), trusted, str(file),
                                          names=names.get(file.name))
            elif file.suffix == ".py":
                text = file.read_text(encoding="utf-8")
                lines = text.splitlines()
                findings += [
                    Finding(str(file), None, line, reason, lines[line - 1])
                    for line, reason in scan_source(text)
                ]
    return findings
