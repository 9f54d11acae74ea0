"""`python gguf_to_hf.py SOURCE.gguf OUT_DIR`: a GGUF model as a Hugging Face model directory
(float32 safetensors and its tokenizer), for vLLM, which no longer loads GGUF. Run with vLLM's
own Python (it has torch, transformers and gguf); imports nothing of rung's. Writes OUT_DIR
whole or not at all."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path


def convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # Dequantized on load: save plain float32 weights, without the GGUF quantization note.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


if __name__ == "__main__":
    started = time.monotonic()
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"converted {sys.argv[1]} in {time.monotonic() - started:.0f} s", flush=True)
