"""`python vllm_adapter.py BASE_MODEL_DIR OUT_DIR`: a LoRA adapter for the base model, with
random weights (PEFT format), for the tests of a tenant's adapter served by vLLM. Run with
vLLM's Python (it has torch, transformers and peft); imports nothing of rung's."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(out)
    print(f"adapter in {out}")
