"""Bundles from the user's own files.

* ``--bundle path/to/bundle.py``: a module that defines ``make_bundle()`` (returning the
  bundle) or a class ``Bundle`` (made with no arguments) implementing the bundle
  interface (:class:`targets.bundles.protocol.Bundle`); ``deploybench init-bundle NAME`` writes a
  commented one to start from.
* ``--model path/to/model.pt``: a TorchScript archive (``torch.jit.save``) or a
  ``torch.export`` archive (``torch.export.save``, usually ``.pt2``), with an optional
  handler module (``--handler``) for pre- and postprocessing and example requests, and
  the shape of one example (``--input-shape 3x32x32`` or the handler's ``INPUT_SHAPE``).

A bundle travels to servers, Lambda environments and containers as one string, its
*spec*: a built-in name, the absolute path of a bundle module, or ``model:`` and a
URL-encoded query naming the model, the handler and the shape. The folders holding the
files it names are mounted read-only, at the same paths, into containers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import sysconfig
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlencode

import numpy as np

from targets.bundles.protocol import BUILTIN_BUNDLES, ENCODINGS, softmax_predictions
from targets.errors import BundleError
from targets.files import sha256_file

if TYPE_CHECKING:
    import numpy as np
    import torch

    from targets.bundles.protocol import Bundle, Prediction

MODEL_PREFIX = "model:"
#: Members every bundle must have; the others have defaults.
REQUIRED = ("input_shape", "load", "preprocess", "predict", "postprocess",
            "example_requests")
#: Example requests made for a model without a handler that gives its own.
DEFAULT_EXAMPLES = 16
EXAMPLE_SEED = 20261128


@dataclass(frozen=True)
class ModelSpec:
    model: Path
    handler: Path | None
    input_shape: tuple[int, ...] | None


def parse_shape(text: str) -> tuple[int, ...]:
    """``3x224x224`` or ``3,224,224`` (one example, no batch dimension)."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise BundleError(f"input shape {text!r}: give the positive sizes of one example, "
                          "without the batch dimension, e.g. 64 or 3x224x224")
    return shape


def model_spec(model: Path, handler: Path | None = None,
               input_shape: tuple[int, ...] | None = None) -> str:
    """The spec string of a saved model, with absolute paths (servers and containers do
    not share our working directory)."""
    return model_spec_raw(model.resolve(), handler.resolve() if handler else None,
                          input_shape)


def parse_model_spec(spec: str) -> ModelSpec:
    query = parse_qs(spec[len(MODEL_PREFIX):])
    if "path" not in query:
        raise BundleError(f"bundle spec {spec!r}: no model path")
    handler = query.get("handler", [None])[0]
    shape = query.get("shape", [None])[0]
    return ModelSpec(Path(query["path"][0]), Path(handler) if handler else None,
                     parse_shape(shape) if shape else None)


#: Suffixes of saved models, which belong to --model, not --bundle.
MODEL_SUFFIXES = (".pt", ".pt2", ".pth", ".ts")


def is_file_spec(spec: str) -> bool:
    return spec.endswith((".py", *MODEL_SUFFIXES)) or "/" in spec or spec.startswith(".")


def is_user_spec(spec: str) -> bool:
    """A bundle of the user's files (else a built-in's name)."""
    return spec not in BUILTIN_BUNDLES and (spec.startswith(MODEL_PREFIX)
                                            or is_file_spec(spec))


def file_spec(path: Path) -> str:
    return str(path.resolve())


def label(spec: str) -> str:
    """A short name for folders and messages: the built-in's name or the file's stem."""
    if spec.startswith(MODEL_PREFIX):
        return parse_model_spec(spec).model.stem
    if is_file_spec(spec):
        return Path(spec).stem
    return spec


def mount_dirs(spec: str) -> list[Path]:
    """The folders a container needs to serve this bundle (none for a built-in)."""
    if spec.startswith(MODEL_PREFIX):
        parsed = parse_model_spec(spec)
        files = [parsed.model, *([parsed.handler] if parsed.handler else [])]
    elif is_file_spec(spec):
        files = [Path(spec)]
    else:
        return []
    return sorted({f.resolve().parent for f in files})


#: Where a container sees the user's folders: /deploybench/user/0, 1, ... (a path of its
#: own, so a bundle in /tmp or /opt hides nothing of the image's).
CONTAINER_ROOT = "/deploybench/user"


def container_view(spec: str) -> tuple[str, dict[Path, str]]:
    """The spec as a container sees it, and which host folder is mounted where (read
    only). A built-in's spec is unchanged and needs no mount."""
    folders = mount_dirs(spec)
    mounts = {folder: f"{CONTAINER_ROOT}/{i}" for i, folder in enumerate(folders)}

    def inside(path: Path) -> Path:
        path = path.resolve()
        return Path(mounts[path.parent]) / path.name

    if spec.startswith(MODEL_PREFIX):
        parsed = parse_model_spec(spec)
        return model_spec_raw(inside(parsed.model),
                              inside(parsed.handler) if parsed.handler else None,
                              parsed.input_shape), mounts
    if folders:
        return str(inside(Path(spec))), mounts
    return spec, {}


def model_spec_raw(model: Path, handler: Path | None,
                   input_shape: tuple[int, ...] | None) -> str:
    """model_spec without resolving the paths against this machine's files."""
    query = {"path": str(model)}
    if handler is not None:
        query["handler"] = str(handler)
    if input_shape is not None:
        query["shape"] = "x".join(str(d) for d in input_shape)
    return MODEL_PREFIX + urlencode(query)


def _not_user_code() -> tuple[Path, ...]:
    """Folders whose frames are never the user's: the interpreter's, installed packages'
    and deploybench's own (a bundle next to a venv would otherwise point into torch)."""
    here = Path(__file__).resolve().parents[2]
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix,
              *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "purelib", "platlib"))}
    ours = [here / package for package in ("targets", "harness", "scenarios", "reports")]
    return tuple(Path(p).resolve() for p in places if p) + tuple(ours)


# -- where an error happened --------------------------------------------------------
def where(exc: BaseException, folder: Path | None) -> str:
    """``file:line`` of the deepest frame of ``exc`` in ``folder`` (the user's code; none
    there: empty, a line inside torch would mislead), or with no folder of its deepest."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = list(traceback.extract_tb(exc.__traceback__))
    if folder is not None:
        others = _not_user_code()
        frames = [f for f in frames if (path := Path(f.filename).resolve()).is_relative_to(
            folder) and "site-packages" not in path.parts
            and not any(path.is_relative_to(o) for o in others)]
    if not frames:
        return ""
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def describe_error(exc: BaseException, folder: Path | None) -> str:
    place = where(exc, folder)
    text = f"{type(exc).__name__}: {exc}".strip()
    text = text if len(text) <= 600 else text[:600] + "..."
    return f"{text} (at {place})" if place else text


def load_module(path: Path, role: str, fresh: bool = False) -> ModuleType:
    """Import the user's module from its file, its folder on sys.path (last: a folder of
    the user's holding, say, a reports/ package must not shadow deploybench's own), so it
    can import its neighbours. Errors name the file and line. ``fresh``: import it again,
    as another process would (module-level state made anew)."""
    path = path.resolve()
    if not path.is_file():
        raise BundleError(f"{role} {path}: no such file")
    name = f"deploybench_user_{role.replace(' ', '_')}_{path.stem}"
    if fresh:
        name += "_fresh"
    elif name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BundleError(f"{role} {path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise BundleError(f"{role} {path} failed to import: "
                          f"{describe_error(exc, path.parent)}") from exc
    return module


# -- a bundle module --------------------------------------------------------------------
class FileBundle:
    """The user's bundle object, with the interface's optional members filled in.

    The hot-path methods are the user's own bound methods (no wrapper call per request).
    """

    uses_torch: bool
    load: Any
    preprocess: Any
    predict: Any
    postprocess: Any
    example_requests: Any
    prepare: Any

    def __init__(self, inner: Any, source: Path) -> None:
        self.inner = inner
        self.source = source
        self.name = str(getattr(inner, "name", None) or source.stem)
        self.description = str(getattr(inner, "description", "") or f"user bundle {source}")
        self.input_shape = _shape_of(inner.input_shape, f"bundle {source}: input_shape")
        self.default_encoding = str(getattr(inner, "default_encoding", "json"))
        self.uses_torch = bool(getattr(inner, "uses_torch", True))
        for member in ("load", "preprocess", "predict", "postprocess", "example_requests"):
            setattr(self, member, getattr(inner, member))
        self.prepare = getattr(inner, "prepare", None) or (lambda: None)

    def info(self) -> dict[str, Any]:
        own = getattr(self.inner, "info", None)
        facts = dict(own()) if callable(own) else {}
        return {
            "name": self.name, "description": self.description,
            "input_shape": list(self.input_shape), "classes": None, "parameters": None,
            "preprocessing": "server side: the bundle's preprocess()", "accuracy": None,
            **facts,
            "source": str(self.source), "source_sha256": sha256_file(self.source),
            # The weights' checksum where the bundle gives it, else its code's: runs of
            # different bundles are told apart by `compare` either way.
            "sha256": facts.get("sha256") or sha256_file(self.source), "user_bundle": True,
        }


def _shape_of(value: Any, what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in value)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(d < 1 for d in shape) or any(
            isinstance(d, bool) or (isinstance(d, float) and not d.is_integer())
            for d in value):
        raise BundleError(f"{what} must be a tuple of positive whole numbers, the shape of "
                          f"one example without the batch dimension (got {value!r})")
    return shape


def file_bundle(path: Path, fresh: bool = False) -> Bundle:
    module = load_module(path, "bundle", fresh)
    factory = getattr(module, "make_bundle", None) or getattr(module, "Bundle", None)
    if not callable(factory):
        raise BundleError(f"bundle {path}: defines neither make_bundle() nor a class Bundle "
                          "(`deploybench init-bundle NAME` writes a template)")
    try:
        inner = factory()
    except Exception as exc:
        raise BundleError(f"bundle {path}: making the bundle failed: "
                          f"{describe_error(exc, path.resolve().parent)}") from exc
    missing = [m for m in REQUIRED if not hasattr(inner, m)]
    if missing:
        raise BundleError(f"bundle {path}: {type(inner).__name__} lacks "
                          f"{', '.join(missing)} (the bundle interface: "
                          f"{', '.join(REQUIRED)}; see targets/bundles/protocol.py)")
    bundle = FileBundle(inner, path.resolve())
    if bundle.default_encoding not in ENCODINGS:
        raise BundleError(f"bundle {path}: default_encoding must be one of {ENCODINGS} "
                          f"(got {bundle.default_encoding!r})")
    return cast("Bundle", bundle)


# -- a saved model --------------------------------------------------------------------
class ModelBundle:
    """A TorchScript or torch.export model, with the handler's optional hooks:
    ``INPUT_SHAPE``, ``NAME``, ``DESCRIPTION``, ``DEFAULT_ENCODING``,
    ``preprocess(batch) -> Tensor``, ``postprocess(outputs) -> list[Prediction]`` and
    ``example_requests() -> list[ndarray]``. Without them: the float32 batch goes to the
    model as it is, the output is read as logits (softmax per row), and the examples are
    seeded random normal values of the input shape."""

    def __init__(self, spec: ModelSpec, fresh: bool = False) -> None:
        self.model_path = spec.model.resolve()
        self.handler_path = spec.handler.resolve() if spec.handler else None
        handler = load_module(self.handler_path, "handler", fresh) if self.handler_path \
            else None
        self.handler = handler
        shape = spec.input_shape or getattr(handler, "INPUT_SHAPE", None)
        if shape is None:
            raise BundleError(f"model {self.model_path}: the shape of one example is "
                              "unknown: give --input-shape (e.g. 3x224x224) or INPUT_SHAPE "
                              "in the handler")
        self.input_shape = _shape_of(shape, f"model {self.model_path}: input shape")
        self.name = str(getattr(handler, "NAME", None) or self.model_path.stem)
        self.description = str(getattr(handler, "DESCRIPTION", None)
                               or f"saved model {self.model_path.name}")
        self.default_encoding = str(getattr(handler, "DEFAULT_ENCODING", None) or "json")
        self._pre = getattr(handler, "preprocess", None)
        self._post = getattr(handler, "postprocess", None)
        self._examples = getattr(handler, "example_requests", None)
        self._net: Any = None
        self.format: str | None = None

    def prepare(self) -> None:
        if not self.model_path.is_file():
            raise BundleError(f"model {self.model_path}: no such file")

    def load(self) -> None:
        self.prepare()
        self._net, self.format = load_saved_model(self.model_path)

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        if self._pre is not None:
            out: torch.Tensor = self._pre(batch)
            return out
        import torch

        return torch.from_numpy(batch)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._net(inputs)
        return out

    def postprocess(self, outputs: torch.Tensor) -> list[Prediction]:
        if self._post is not None:
            predictions: list[Prediction] = self._post(outputs)
            return predictions

        shape = tuple(getattr(outputs, "shape", ()))
        if len(shape) != 2:
            raise BundleError(f"the model's output has shape {shape}; without a handler's "
                              "postprocess() it must be logits of shape (batch, classes)")
        return softmax_predictions(outputs)

    def example_requests(self) -> list[np.ndarray]:
        if self._examples is not None:
            examples: list[np.ndarray] = self._examples()
            return examples

        rng = np.random.default_rng(EXAMPLE_SEED)
        return [rng.standard_normal((1, *self.input_shape)).astype(np.float32)
                for _ in range(DEFAULT_EXAMPLES)]

    def info(self) -> dict[str, Any]:
        parameters = None
        with contextlib.suppress(Exception):
            parameters = sum(p.numel() for p in self._net.parameters()) or None
        return {
            "name": self.name, "description": self.description,
            "input_shape": list(self.input_shape), "classes": None,
            "parameters": parameters,
            "preprocessing": "server side: the handler's preprocess()" if self._pre
            else "none (the request's float32 values go to the model as they are)",
            "accuracy": None,
            "sha256": sha256_file(self.model_path) if self.model_path.is_file() else None,
            "model": str(self.model_path), "model_format": self.format,
            "handler": str(self.handler_path) if self.handler_path else None,
            "user_bundle": True,
        }


def load_saved_model(path: Path) -> tuple[Any, str]:
    """A TorchScript archive (torch.jit.load) or a torch.export archive
    (torch.export.load), in eval mode; the error says what the file is not."""
    import torch

    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, and still common
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        net.eval()
        return net, "torchscript"
    except Exception as jit_error:
        try:
            program = torch.export.load(str(path))
        except Exception as export_error:
            raise BundleError(
                f"model {path} is neither a TorchScript archive (torch.jit.load: "
                f"{_first_line(jit_error)}) nor a torch.export archive (torch.export.load: "
                f"{_first_line(export_error)}). Save it with torch.jit.save(torch.jit."
                "script(model), PATH) or torch.export.save(torch.export.export(model, "
                "(example,)), PATH); a state_dict needs a bundle module that builds the "
                "network") from export_error
    module = program.module()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not all versions allow
        module.eval()
    return module, "torch.export"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def user_bundle(spec: str, fresh: bool = False) -> Bundle:
    """The bundle a spec that is not a built-in's name names; ``fresh``: its modules
    imported anew, as in another process."""
    if spec.startswith(MODEL_PREFIX):
        return cast("Bundle", ModelBundle(parse_model_spec(spec), fresh))
    path = Path(spec)
    if path.suffix in MODEL_SUFFIXES:
        raise BundleError(f"{spec} is a saved model: give it with --model (and --input-shape "
                          "or a --handler)")
    if path.suffix != ".py":
        raise BundleError(f"bundle {spec}: a bundle file is a Python module (.py)")
    return file_bundle(path, fresh)
