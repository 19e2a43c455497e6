#!/usr/bin/env python3
"""Checks that each layer includes only the layers it may use (docs/architecture.md).

The link lines enforce the same rule for symbols; this check catches a header-only reach
the wrong way, which no linker would notice. Exit 1 lists every offending include.
"""
import pathlib
import re
import sys

# layer folder -> the layer folders it may include (itself always allowed)
ALLOWED = {
    "support": set(),
    "ir": {"support"},
    "rules": set(),
    "frontend": {"support", "ir", "rules"},
    "codegen/halide": {"support", "ir", "codegen/halide"},
    "codegen/cuda": {"support", "ir"},
    "runtime": {"support", "ir"},
    "runtime/cuda": {"support", "ir", "runtime"},
    "autotune": {"support", "ir", "codegen/halide", "codegen/cuda", "runtime", "runtime/cuda"},
    "api": {"support", "ir", "rules", "frontend", "codegen/halide", "codegen/cuda", "runtime",
            "runtime/cuda", "autotune", "pack"},
    # Kernel packs: the reader and loader (pack/) stay runtime-only (the CUDA runtime opens
    # the driver with dlopen); the builder (pack/builder/) may use everything but the api.
    "pack": {"support", "ir", "rules", "frontend", "runtime", "runtime/cuda"},
    "pack/builder": {"support", "ir", "rules", "frontend", "codegen/halide", "codegen/cuda",
                   "runtime", "runtime/cuda", "autotune", "pack"},
}
LAYERS = sorted(ALLOWED, key=len, reverse=True)  # longest first: runtime/cuda before runtime
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def layer_of(path: str):
    for layer in LAYERS:
        if path == layer or path.startswith(layer + "/"):
            return layer
    return None


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    problems = []
    checked = 0
    for layer in LAYERS:
        folder = root / layer
        if not folder.is_dir():
            continue
        for source in sorted(folder.rglob("*")):
            if source.suffix not in {".h", ".cc", ".def"}:
                continue
            relative = source.relative_to(root).as_posix()
            if layer_of(relative) != layer:
                continue  # belongs to a nested layer, checked there
            checked += 1
            for included in INCLUDE.findall(source.read_text(errors="replace")):
                target = layer_of(included)
                if target is None or target == layer or target in ALLOWED[layer]:
                    continue
                problems.append(f"{relative}: includes \"{included}\" ({layer} may not use {target})")
    for problem in problems:
        print(problem)
    print(f"layering: {checked} files checked, {len(problems)} violations")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
