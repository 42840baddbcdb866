"""Cross-check of `runner export --format hf` against Hugging Face's own libraries.

Loads the exported directory with `transformers` (AutoModelForCausalLM, AutoTokenizer; no
trust_remote_code), and for each prompt compares with the runner on the same checkpoint:
  - the prompt's token ids (the tokenizer.json read by `tokenizers` through transformers),
  - the logits of the next token (max absolute difference),
  - greedy generations (token ids, identical or not).
Prints a Markdown table; exits 1 when a difference exceeds --tolerance or a generation
differs. Called by scripts/check_hf_export.sh, which sets up the virtual environment.
"""

import argparse
import json
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def runner_generate(runner, run, prompt, max_new):
    out = subprocess.run(
        [runner, "generate", run, "--prompt", prompt, "--max-new-tokens", str(max_new), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", default="./target/release/runner")
    parser.add_argument("--run", required=True, help="the run directory")
    parser.add_argument("--export", required=True, help="the exported directory")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("prompts", nargs="+")
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.export)
    model = AutoModelForCausalLM.from_pretrained(args.export)
    model.eval()
    eos = model.generation_config.eos_token_id

    print(f"model: {type(model).__name__}, tokenizer: {type(tokenizer).__name__}, "
          f"torch {torch.__version__}")
    print()
    print("| prompt | prompt ids equal | max abs logit diff | greedy ids equal | new tokens |")
    print("|---|---|---|---|---|")
    failed = False
    for prompt in args.prompts:
        ours = runner_generate(args.runner, args.run, prompt, args.max_new_tokens)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else [eos]
        same_ids = ids == ours["prompt_ids"]
        input_ids = torch.tensor([ours["prompt_ids"]])
        with torch.no_grad():
            logits = model(input_ids).logits[0, -1]
            theirs = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=0,
            )[0, input_ids.shape[1]:].tolist()
        diff = (logits - torch.tensor(ours["first_logits"])).abs().max().item()
        # The runner stops before <|endoftext|>; transformers writes it, then stops.
        if eos in theirs:
            theirs = theirs[: theirs.index(eos)]
        same_greedy = theirs == ours["ids"]
        failed |= not (same_ids and same_greedy and diff <= args.tolerance)
        shown = prompt.replace("|", "\\|").replace("\n", "\\n")
        print(f"| `{shown}` | {same_ids} | {diff:.2e} | {same_greedy} | {len(ours['ids'])} |")
        if not same_greedy:
            print(f"\nrunner: {ours['ids']}\ntransformers: {theirs}\n", file=sys.stderr)
    print()
    print("result:", "FAILED" if failed else f"ok (tolerance {args.tolerance:g})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
