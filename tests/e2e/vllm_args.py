"""Read JSON `[[arg, ...], ...]` (vLLM server command lines) on stdin, parse each with the
installed vLLM's own argument parser, and print what rung's config relies on as JSON (an
`error` for a command line vLLM refuses). Run with vLLM's Python; imports nothing of rung's."""

from __future__ import annotations

import contextlib
import io
import json
import sys

if __name__ == "__main__":
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    out = []
    for args in json.load(sys.stdin):
        parser = make_arg_parser(FlexibleArgumentParser())
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parsed = parser.parse_args(args)
        except SystemExit:
            out.append({"error": errors.getvalue().strip().splitlines()[-1:]})
            continue
        modules = parsed.lora_modules or []
        out.append(
            {
                "served_model_name": parsed.served_model_name,
                "port": parsed.port,
                "max_model_len": parsed.max_model_len,
                "max_logprobs": parsed.max_logprobs,
                "enable_lora": bool(parsed.enable_lora),
                "lora_modules": [getattr(m, "name", str(m)) for m in modules],
                "enable_auto_tool_choice": bool(parsed.enable_auto_tool_choice),
                "tool_call_parser": parsed.tool_call_parser,
            }
        )
    print(json.dumps(out))
