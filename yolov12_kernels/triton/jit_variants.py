"""A launch as the kernel variant Triton's JIT compiles for it, and that variant compiled into (or
found in) Triton's own cache ahead of the launch, without a GPU.

``kernel[grid](*args, **kwargs)`` compiles once per *variant*: the JIT binds the arguments
(``create_function_from_signature``: dtypes, which integers are 1 or divisible by 16, which
pointers are 16-byte aligned, the constexprs) and keys its in-memory kernel cache on that
specialisation and the compile options; a miss there goes to ``triton.compile``, which looks the
variant up in the on-disk cache (``TRITON_CACHE_DIR``, by default ``~/.triton/cache``) before
compiling it. ``bind`` does the JIT's binding for an sm_``cc`` GPU on any tensors (CPU, meta or
CUDA: only dtypes, strides, alignments and values count) and returns a :class:`Variant`, plain
data that another process can compile; ``compile_variant`` compiles it there with the JIT's own
inputs, so the launch later finds it in the cache; ``in_cache`` says whether it already is
(``triton.compile``'s own lookup, without compiling).

Triton 3.6 (the GPU machine's) also builds a C launcher per kernel signature with the host's C
compiler the first time a kernel of that signature runs (cached too); ``launcher_source`` gives
its source, ``build_launcher`` builds it into the cache (it needs ``libcuda.so.1`` to link, so a
GPU machine or ``TRITON_LIBCUDA_PATH``). Triton 3.9 launches through one prebuilt launcher: no
source, nothing to build.

Compiling needs the kernels as compiled functions: a process that imported them interpreted
(``TRITON_INTERPRET=1``) can bind, not compile or look up (``compilable``).
"""
from __future__ import annotations

import hashlib
import importlib
import sysconfig
from typing import NamedTuple


class Variant(NamedTuple):
    """One compiled variant of a kernel: ``key`` tells variants apart as the JIT's kernel cache
    does; the rest is what ``triton.compile`` gets for it (plain data: it crosses processes)."""
    kernel: str        # "module:name" of the @triton.jit function
    cc: int            # the target's compute capability (90 = sm_90)
    key: tuple         # (kernel, specialisation, options): the JIT's own cache key
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict

    @property
    def name(self) -> str:
        return self.kernel.rsplit(":", 1)[1]


# keyed by the kernel's Python function: a JITFunction hashes by its source's cache key, which an
# interpreted process cannot compute (its helpers are interpreted functions)
_JIT: dict = {}
_BINDERS: dict = {}


def jit_function(kernel):
    """The JITFunction of a kernel; under the interpreter, one built from the same Python
    function with the same ``triton.jit`` arguments (``do_not_specialize``), for the binder."""
    from triton.runtime.jit import JITFunction
    if isinstance(kernel, JITFunction):
        return kernel
    fn = _JIT.get(kernel.fn)
    if fn is None:
        fn = _JIT[kernel.fn] = JITFunction(kernel.fn, **getattr(kernel, "kwargs", {}))
    return fn


def _binder(fn, cc: int):
    found = _BINDERS.get((fn.fn, cc))
    if found is None:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature
        backend = make_backend(GPUTarget("cuda", cc, 32))
        found = _BINDERS[fn.fn, cc] = (
            backend, create_function_from_signature(fn.signature, fn.params, backend))
    return found


def _jit_options(fn) -> dict:
    """The options ``JITFunction.run`` adds to a launch's keywords before binding it (Triton 3.6
    and 3.9; 3.9 adds the fpsan one)."""
    from triton import knobs
    out = {"debug": fn.debug or knobs.runtime.debug,
           "instrumentation_mode": knobs.compilation.instrumentation_mode}
    if hasattr(knobs.compilation, "fpsan_homomorphic_casts"):
        out["fpsan_homomorphic_casts"] = knobs.compilation.fpsan_homomorphic_casts
    return out


def bind(kernel, args, kwargs, cc: int, known=()) -> Variant | None:
    """The variant ``kernel[grid](*args, **kwargs)`` compiles on an sm_``cc`` GPU; None when its
    key is in ``known`` (what the compile needs is then not worked out)."""
    fn = jit_function(kernel)
    backend, binder = _binder(fn, cc)
    kwargs = {**kwargs, **_jit_options(fn)}
    bound, spec, options = binder(*args, **kwargs)
    name = f"{fn.fn.__module__}:{fn.fn.__qualname__}"
    key = (name, str(spec), str(sorted(options.items())))
    if key in known:
        return None
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, options)
    return Variant(name, cc, key, signature, constexprs, attrs, dict(options.__dict__))


def kernel_function(v: Variant):
    """The kernel as this process holds it (its module imported by name)."""
    module, name = v.kernel.split(":")
    return getattr(importlib.import_module(module), name)


def compilable(v: Variant) -> bool:
    """Whether this process holds ``v``'s kernel compiled, not interpreted: only then can it
    compile ``v`` or look it up in the cache."""
    from triton.runtime.jit import JITFunction
    return isinstance(kernel_function(v), JITFunction)


def source(v: Variant, fn=None):
    """(ASTSource, GPUTarget, options): ``triton.compile``'s arguments, as the JIT passes them."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    return (ASTSource(fn or kernel_function(v), v.signature, v.constexprs, v.attrs),
            GPUTarget("cuda", v.cc, 32), v.options)


def in_cache(v: Variant) -> bool:
    """Whether ``triton.compile`` would find ``v`` in the cache: its own lookup (Triton 3.6 and
    3.9), without compiling. False where Triton would compile anyway (always_compile, a stages
    inspection hook that changes the key)."""
    from triton import knobs
    from triton.compiler import make_backend
    from triton.compiler.compiler import (get_cache_invalidating_env_vars, get_cache_key,
                                          get_cache_manager)
    if knobs.compilation.always_compile or getattr(knobs.runtime, "add_stages_inspection_hook",
                                                   None) is not None:
        return False
    src, target, options = source(v)
    backend = make_backend(target)
    options = backend.parse_options(dict(options, **src.parse_options()))
    key = get_cache_key(src, backend, options, env_vars=get_cache_invalidating_env_vars())
    name = f"{src.name[:150]}.json"
    group = get_cache_manager(hashlib.sha256(key.encode("utf-8")).hexdigest()).get_group(name)
    return bool(group) and name in group


def compile_variant(v: Variant, fn=None):
    """Compile ``v`` into the cache; (compiled kernel, True if it was compiled, False if found)."""
    import triton
    from triton import knobs
    hits = []
    with knobs.compilation.scope():
        knobs.compilation.listener = lambda **event: hits.append(event["cache_hit"])
        kernel = triton.compile(*source(v, fn)[:2], options=v.options)
    return kernel, not (hits and hits[0])


# ------------------------------------------------------------------------------------------------
# Triton 3.6's C launchers
# ------------------------------------------------------------------------------------------------
_LAUNCHER = "__triton_launcher"


def launcher_source(v: Variant) -> str | None:
    """The C source of the launcher Triton builds for ``v``'s signature at its first launch
    (``CudaLauncher``), or None where Triton builds none (3.9)."""
    try:
        from triton.backends.nvidia.driver import make_launcher
    except ImportError:
        return None
    # ASTSource's constants (index paths) and signature: what CudaLauncher hands make_launcher;
    # no tensor descriptors in these kernels (tensordesc_meta only matters for those)
    return make_launcher(dict(v.constexprs), dict(v.signature), None)


def _launcher_cache(src: str):
    from triton.runtime.build import platform_key
    from triton.runtime.cache import get_cache_manager
    key = hashlib.sha256((src + platform_key()).encode("utf-8")).hexdigest()
    return get_cache_manager(key), f"{_LAUNCHER}{sysconfig.get_config_var('EXT_SUFFIX')}"


def launcher_in_cache(src: str) -> bool:
    """Whether the launcher of ``src`` is in the cache (``compile_module_from_src``'s lookup)."""
    cache, name = _launcher_cache(src)
    return cache.get_file(name) is not None


def can_build_launchers() -> str | None:
    """Why launchers cannot be built here (no libcuda.so.1 to link against), or None."""
    try:
        from triton.backends.nvidia.driver import library_dirs
        library_dirs()
    except (ImportError, AssertionError, OSError) as e:
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    except Exception as e:  # noqa: BLE001 — ldconfig missing or failing: no launcher
        return f"{type(e).__name__}: {e}"
    return None


def build_launcher(src: str) -> bool:
    """Build the launcher of ``src`` into the cache as Triton does (True: built; False: it was
    there). Loading it needs the driver: a machine without one keeps the built file and says so
    only by the load failing, which is ignored here."""
    if launcher_in_cache(src):
        return False
    from triton.backends.nvidia.driver import include_dirs, libraries, library_dirs
    from triton.runtime.build import compile_module_from_src
    try:
        compile_module_from_src(src=src, name=_LAUNCHER, library_dirs=library_dirs(),
                                include_dirs=include_dirs, libraries=libraries)
    except ImportError:
        if not launcher_in_cache(src):  # built but not loadable here: fine; not built: not
            raise
    return True


__all__ = ["Variant", "bind", "jit_function", "kernel_function", "compilable", "source",
           "in_cache", "compile_variant", "launcher_source", "launcher_in_cache",
           "can_build_launchers", "build_launcher"]
