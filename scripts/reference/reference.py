"""PyTorch reference of the runner's five models, for side-by-side benchmarks.

Same task, ids, sizes, batching, loss and optimiser as the Rust runner (see src/model/,
src/data/batcher.rs, src/train/): embedding 32 + one GRU/LSTM of 128; Transformers of
d_model 64, 4 heads, d_ff 256, GELU, pre-norm, learned positions (or rotary ones where a
run's spec says `rope`), no dropout; cross-entropy
on the answer positions only; AdamW (eps 1e-8, weight decay 0.01), gradient norm clipped to
1.0 per parameter; warm-up then cosine decay over the time budget.

    python reference.py bench --arch gru --threads 1 --pool pool.jsonl
    python reference.py train --run experiments/tra_1min/<stamp> --threads 2 --out m.csv
    python reference.py profile --arch lstm --pool pool.jsonl   # torch.profiler's kernels

`bench` prints one JSON line per architecture with the columns of `runner bench`; `train`
writes a metrics.csv like the runner's (step, elapsed_s, val_exact) and prints a JSON summary.
"""

import argparse
import copy
import functools
import json
import math
import random
import re
import resource
import sys
import time
import tomllib

import torch
from torch import nn
import torch.nn.functional as F

IDS = {"(": 1, ")": 2, "【": 3, "】": 4, "{": 5, "}": 6}
PAD, INPUT, OUTPUT, END = 0, 7, 8, 9
VOCAB = 10
MASK = VOCAB  # BERT's extra embedding row
MAX_DEPTH, MAX_LEN = 6, 20
SLOTS = MAX_DEPTH + 1  # answer length limit of the default task, plus the final `,`
POSITIONS = MAX_LEN + 2 + SLOTS


def load(path):
    """[(prefix ids, answer ids)] from the runner's JSONL (`{"input": .., "output": ..}`)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            try:
                prefix = [IDS[c] for c in record["input"]]
                answer = [IDS[c] for c in record["output"]]
            except KeyError as e:
                sys.exit(f"{path}:{n}: unknown character {e}; allowed: {''.join(IDS)}")
            rows.append((prefix, answer))
    return rows


# ---- batches: the layouts of src/data/batcher.rs ---------------------------------------


def pad(rows, width=0):
    """One tensor of `rows`, each right-padded with PAD to the longest (at least `width`).
    Built from Python lists in one call: per-row tensor writes cost ~0.6 ms a batch, a
    tenth of a recurrent training step."""
    w = max(width, max(len(r) for r in rows))
    return torch.tensor([r + [PAD] * (w - len(r)) for r in rows])


def next_token(examples, width=0):
    tokens, targets = [], []
    for p, a in examples:
        record = [INPUT] + p + [OUTPUT] + a + [END]
        start = len(p) + 1  # `,output`: from here on the next token is the answer
        tokens.append(record[:-1])
        targets.append([PAD] * start + record[start + 1 :])
    return {"tokens": pad(tokens, width), "targets": pad(targets, width)}


def encoder_decoder(examples, width=0):
    source = [[INPUT] + p for p, _ in examples]
    tokens = [[OUTPUT] + a for _, a in examples]
    targets = [a + [END] for _, a in examples]
    # Padding widens the decoder too, as `runner bench --pad-to` does.
    return {"source": pad(source, width), "tokens": pad(tokens, width),
            "targets": pad(targets, width)}


def masked(examples, width=0):
    tokens, targets = [], []
    for p, a in examples:
        prompt = [INPUT] + p + [OUTPUT]
        tokens.append(prompt + [MASK] * SLOTS)
        targets.append([PAD] * len(prompt) + a + [END])
    tokens = pad(tokens, width)
    return {"tokens": tokens, "targets": pad(targets, tokens.shape[1])}


LAYOUTS = {"gru": next_token, "lstm": next_token, "gpt": next_token,
           "tra": encoder_decoder, "ber": masked}


def epoch_batches(lengths, batch_size, rng, bucket=True):
    """Index lists for one epoch: shuffled, sorted by length within windows of 16 batches,
    shuffled again (as the runner). Without `bucket`: plain shuffled chunks."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    step = batch_size * 16 if bucket else len(order)
    for i in range(0, len(order), step):
        window = order[i : i + step]
        if bucket:
            window.sort(key=lambda j: lengths[j])
        batches += [window[k : k + batch_size] for k in range(0, len(window), batch_size)]
    rng.shuffle(batches)
    return batches


# ---- models: the modules of src/model/ --------------------------------------------------


def rotary(m):
    return m.get("pos_encoding", "learned") == "rope"


def blocks(m, n_layers):
    if rotary(m):
        return RotaryStack(m, n_layers, cross=False)
    layer = nn.TransformerEncoderLayer(m["d_model"], m["n_heads"], m["d_ff"], dropout=0.0,
                                       activation=m["activation"], batch_first=True,
                                       norm_first=m["norm_first"])
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class Embed(nn.Module):
    """Token embeddings plus learned positions; rotary positions add nothing here."""

    def __init__(self, n_tokens, m):
        super().__init__()
        self.tokens = nn.Embedding(n_tokens, m["d_model"])
        n_positions = m.get("positions", POSITIONS)
        self.positions = None if rotary(m) else nn.Embedding(n_positions, m["d_model"])

    def forward(self, x):
        if self.positions is None:
            return self.tokens(x)
        return self.tokens(x) + self.positions.weight[: x.shape[1]]


@functools.lru_cache(maxsize=None)
def rope_angles(length, half):
    """cos and sin [length, half], computed in f64 as crates/kernels/src/rope.rs does; every
    layer of every step asks for the same few lengths."""
    theta = 10000.0 ** (-2.0 * torch.arange(half, dtype=torch.float64) / (2 * half))
    angle = torch.arange(length, dtype=torch.float64)[:, None] * theta
    return angle.cos().float(), angle.sin().float()


def rope(x):
    """The runner's rotary positions (src/model/attention.rs): each pair (x_i, x_{i + d/2})
    of [batch, heads, len, d_k] turned by position * 10000^(-2i/d_k); an odd d_k leaves its
    last unit as is."""
    half = x.shape[-1] // 2
    if half == 0:
        return x
    cos, sin = rope_angles(x.shape[2], half)
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., 2 * half :]], -1)


class Attention(nn.Module):
    """Multi-head attention with rotary queries and keys (self-attention only, as in the
    runner: cross-attention relates two sequences and gets no positions)."""

    def __init__(self, m, turn):
        super().__init__()
        d = m["d_model"]
        self.heads, self.turn = m["n_heads"], turn
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        # nn.MultiheadAttention's initialisation, as the learned-position reference has it:
        # Xavier over the stacked [3d, d] input projection, zero biases.
        bound = math.sqrt(6.0 / (4 * d))
        with torch.no_grad():
            for linear in (self.query, self.key, self.value):
                linear.weight.uniform_(-bound, bound)
            for linear in (self.query, self.key, self.value, self.out):
                linear.bias.zero_()

    def forward(self, x, memory, pad=None, mask=None):
        """`mask`: an additive [queries, keys] mask such as causal(n); `pad`: padded keys."""
        b, n, d = x.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(memory)), split(self.value(memory))
        if self.turn:
            q, k = rope(q), rope(k)
        if pad is not None:
            bias = torch.zeros(pad.shape, dtype=q.dtype).masked_fill(pad, float("-inf"))
            bias = bias[:, None, None, :]
            mask = bias if mask is None else mask + bias
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class RotaryLayer(nn.Module):
    """nn.TransformerEncoderLayer's (or, with `cross`, DecoderLayer's) order of operations
    around rotary self-attention: each sub-layer x + f(norm(x)) pre-norm, norm(x + f(x))
    post-norm."""

    def __init__(self, m, cross):
        super().__init__()
        d, act = m["d_model"], {"gelu": nn.GELU, "relu": nn.ReLU}[m["activation"]]
        self.norm_first = m["norm_first"]
        self.self_attn = Attention(m, turn=True)
        self.cross_attn = Attention(m, turn=False) if cross else None
        self.ff = nn.Sequential(nn.Linear(d, m["d_ff"]), act(), nn.Linear(m["d_ff"], d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3 if cross else 2))

    def forward(self, x, pad=None, mask=None, memory=None, memory_pad=None):
        subs = [lambda y: self.self_attn(y, y, pad, mask)]
        if self.cross_attn is not None:
            subs.append(lambda y: self.cross_attn(y, memory, memory_pad))
        subs.append(self.ff)
        for f, norm in zip(subs, self.norms):
            x = x + f(norm(x)) if self.norm_first else norm(x + f(x))
        return x


class RotaryStack(nn.Module):
    """Layers of RotaryLayer, called as nn.TransformerEncoder and nn.TransformerDecoder are
    by the models below."""

    def __init__(self, m, n_layers, cross):
        super().__init__()
        self.layers = nn.ModuleList(RotaryLayer(m, cross) for _ in range(n_layers))

    def forward(self, x, memory=None, mask=None, is_causal=False, src_key_padding_mask=None,
                tgt_mask=None, tgt_is_causal=False, memory_key_padding_mask=None):
        # The callers pass causal(n) as `mask` or `tgt_mask`; the is_causal flags only say so.
        self_mask = mask if mask is not None else tgt_mask
        for layer in self.layers:
            x = layer(x, src_key_padding_mask, self_mask, memory, memory_key_padding_mask)
        return x


def causal(n):
    return torch.triu(torch.full((n, n), float("-inf")), diagonal=1)


class Recurrent(nn.Module):
    def __init__(self, m, cell):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, m["d_embed"])
        self.rnn = cell(m["d_embed"], m["d_hidden"], m["n_layers"], batch_first=True)
        self.head = nn.Linear(m["d_hidden"], VOCAB)

    def forward(self, tokens, state=None):
        x, state = self.rnn(self.embed(tokens), state)
        return self.head(x), state


class Gpt(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.embed = Embed(VOCAB, m)
        self.blocks = blocks(m, m["n_layers"])
        self.norm = nn.LayerNorm(m["d_model"])
        self.head = nn.Linear(m["d_model"], VOCAB)

    def forward(self, tokens):
        n = tokens.shape[1]
        x = self.blocks(self.embed(tokens), mask=causal(n), is_causal=True)
        return self.head(self.norm(x))


class Bert(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.embed = Embed(VOCAB + 1, m)
        self.blocks = blocks(m, m["n_layers"])
        self.norm = nn.LayerNorm(m["d_model"])
        self.head = nn.Linear(m["d_model"], VOCAB)

    def forward(self, tokens):
        x = self.blocks(self.embed(tokens), src_key_padding_mask=tokens.eq(PAD))
        return self.head(self.norm(x))


class Tra(nn.Module):
    def __init__(self, m):
        super().__init__()
        d = m["d_model"]
        self.source_embed = Embed(VOCAB, m)
        self.target_embed = Embed(VOCAB, m)
        self.encoder = blocks(m, m["n_enc_layers"])
        if rotary(m):
            self.decoder = RotaryStack(m, m["n_dec_layers"], cross=True)
        else:
            layer = nn.TransformerDecoderLayer(d, m["n_heads"], m["d_ff"], dropout=0.0,
                                               activation=m["activation"], batch_first=True,
                                               norm_first=m["norm_first"])
            self.decoder = nn.TransformerDecoder(layer, m["n_dec_layers"])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, source, tokens):
        pad = source.eq(PAD)
        memory = self.encoder(self.source_embed(source), src_key_padding_mask=pad)
        n = tokens.shape[1]
        x = self.decoder(self.target_embed(tokens), memory, tgt_mask=causal(n),
                         tgt_is_causal=True, memory_key_padding_mask=pad)
        return self.head(self.norm(x))


# The reference sizes of `runner bench` (src/bench.rs, reference_spec).
REFERENCE = {"d_embed": 32, "d_hidden": 128, "d_model": 64, "n_heads": 4, "d_ff": 256,
             "n_enc_layers": 2, "n_dec_layers": 2, "norm_first": True, "activation": "gelu"}


def reference_model(arch):
    return dict(REFERENCE, arch=arch, n_layers=1 if arch in ("gru", "lstm") else 2)


def build(m):
    return {"gru": lambda: Recurrent(m, nn.GRU), "lstm": lambda: Recurrent(m, nn.LSTM),
            "gpt": lambda: Gpt(m), "ber": lambda: Bert(m), "tra": lambda: Tra(m)}[m["arch"]]()


def logits_of(model, batch):
    if "source" in batch:
        return model(batch["source"], batch["tokens"])
    out = model(batch["tokens"])
    return out[0] if isinstance(out, tuple) else out


# ---- training ---------------------------------------------------------------------------


class Trainer:
    def __init__(self, model, lr, warmup, weight_decay=0.01, clip=1.0, min_ratio=0.1):
        self.model, self.lr, self.warmup = model, lr, warmup
        self.clip, self.min_ratio, self.step_no = clip, min_ratio, 0
        self.params = [p for p in model.parameters()]
        self.optim = torch.optim.AdamW(self.params, lr=lr, eps=1e-8, weight_decay=weight_decay)

    def lr_at(self, progress):
        if self.step_no < self.warmup:
            return self.lr * (self.step_no + 1) / self.warmup
        p = min(max(progress, 0.0), 1.0)
        return self.lr * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))

    def step(self, batch, progress=0.0):
        for group in self.optim.param_groups:
            group["lr"] = self.lr_at(progress)
        logits = logits_of(self.model, batch)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch["targets"].reshape(-1),
                               ignore_index=PAD)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        # burn's GradientClippingConfig::Norm clips each parameter's gradient on its own.
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch._foreach_norm(grads)
        scale = [torch.clamp(self.clip / (n + 1e-6), max=1.0) for n in norms]
        torch._foreach_mul_(grads, scale)
        self.optim.step()
        self.step_no += 1
        return loss


@torch.no_grad()
def exact_match(model, examples, arch, batch_size=500):
    """Share of examples whose every answer position (closers and `,`) is argmax-correct
    under teacher forcing: equal to greedy exact match for all five models."""
    model.eval()
    right = 0
    for i in range(0, len(examples), batch_size):
        batch = LAYOUTS[arch](examples[i : i + batch_size])
        guess = logits_of(model, batch).argmax(-1)
        scored = batch["targets"].ne(PAD)
        wrong = (guess.ne(batch["targets"]) & scored).any(dim=1)
        right += int((~wrong).sum())
    model.train()
    return right / len(examples)


@torch.no_grad()
def greedy(model, arch, examples):
    """Greedy decoding of every example, grouped by prompt length (no padding). The
    recurrent models carry their state; BERT fills its slots in one pass; GPT and TRA
    re-run the sequence each step (PyTorch's Transformer modules have no KV cache)."""
    model.eval()
    groups = {}
    for p, _ in examples:
        groups.setdefault(len(p), []).append(p)
    for prefixes in groups.values():
        prompt = torch.tensor([[INPUT] + p + [OUTPUT] for p in prefixes])
        if arch == "ber":
            slots = torch.full((len(prefixes), SLOTS), MASK)
            model(torch.cat([prompt, slots], 1)).argmax(-1)
        elif arch in ("gru", "lstm"):
            logits, state = model(prompt)
            for _ in range(SLOTS):
                nxt = logits[:, -1:].argmax(-1)
                logits, state = model(nxt, state)
        elif arch == "gpt":
            seq = prompt
            for _ in range(SLOTS):
                seq = torch.cat([seq, model(seq)[:, -1:].argmax(-1)], 1)
        else:
            source = prompt[:, :-1]
            seq = prompt[:, -1:]
            for _ in range(SLOTS):
                seq = torch.cat([seq, model(source, seq)[:, -1:].argmax(-1)], 1)
    model.train()


def bench(args):
    # Denormals stay at PyTorch's default: torch.set_flush_denormal(True), as the runner
    # flushes them, made this side no faster on an Intel Xeon (docs/benchmarks.md).
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    pool = load(args.pool)
    lengths = [len(p) for p, _ in pool]
    rng = random.Random(1)
    layout = LAYOUTS[args.arch]
    width = args.pad_to

    def batches():
        while True:
            for rows in epoch_batches(lengths, args.batch_size, rng, args.batching == "bucketed"):
                yield [pool[i] for i in rows]

    source = batches()
    # Padded batches need positions up to the padded width, as in `runner bench`.
    model = build(dict(reference_model(args.arch), positions=max(POSITIONS, args.pad_to)))
    trainer = Trainer(model, lr=1e-3, warmup=0)

    def run(n):
        samples = tokens = 0
        for _ in range(n):
            rows = next(source)
            samples += len(rows)
            tokens += sum(len(p) + len(a) + 2 for p, a in rows)
            trainer.step(layout(rows, width))
        return samples, tokens

    run(10)  # warm-up
    sps, tps = [], []
    for _ in range(args.windows):
        t0 = time.perf_counter()
        samples, tokens = run(args.window_steps)
        dt = time.perf_counter() - t0
        sps.append(samples / dt)
        tps.append(tokens / dt)
    examples = pool[:1000]
    eps = []
    for _ in range(3):
        t0 = time.perf_counter()
        greedy(model, args.arch, examples)
        eps.append(len(examples) / (time.perf_counter() - t0))
    print(json.dumps({
        "arch": args.arch, "framework": f"pytorch {torch.__version__}", "threads": args.threads,
        "batch_size": args.batch_size, "batching": args.batching + (f"+pad{width}" if width else ""),
        "params": sum(p.numel() for p in model.parameters()),
        "train_samples_per_s": sorted(sps)[len(sps) // 2], "train_samples_per_s_min": min(sps),
        "train_samples_per_s_max": max(sps), "train_tokens_per_s": sorted(tps)[len(tps) // 2],
        "eval_examples_per_s": sorted(eps)[1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)


def profile(args):
    """Which kernels PyTorch runs in a training step (issue 11's ceiling: e.g. whether its
    LSTM goes through oneDNN's fused RNN or one matrix product per step), as torch.profiler's
    table of operators by their own CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    pool = load(args.pool)
    rng = random.Random(1)
    rows = [pool[i] for i in epoch_batches([len(p) for p, _ in pool], args.batch_size, rng)[0]]
    batch = LAYOUTS[args.arch](rows)
    model = build(reference_model(args.arch))
    trainer = Trainer(model, lr=1e-3, warmup=0)
    for _ in range(10):
        trainer.step(batch)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            trainer.step(batch)
    print(f"{args.arch}, {args.threads} thread(s), batch {args.batch_size}, {args.steps} steps, "
          f"pytorch {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


def seconds(text):
    """humantime-style durations as the runner's specs write them: "5s", "1min", "1h30min"."""
    units = {"ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400,
             "day": 86400, "days": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        sys.exit(f"cannot read the duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def run_settings(run_dir):
    """The model and training settings of a runner run (its resolved.toml). Refuses what
    this reference does not implement rather than train something else."""
    with open(f"{run_dir}/resolved.toml", "rb") as f:
        spec = tomllib.load(f)
    m, t, d = spec["model"], spec["train"], spec["data"]
    unsupported = {
        "data.pairs": (d["pairs"], ["()", "【】", "{}"]), "data.max_len": (d["max_len"], MAX_LEN),
        "data.max_depth": (d["max_depth"], MAX_DEPTH), "model.dropout": (m["dropout"], 0.0),
        "model.pos_encoding": (m["pos_encoding"], ("learned", "rope")),
        "model.mlm_prob": (m["mlm_prob"], 0.0),
        "model.max_positions": (m["max_positions"], 0), "train.lr_decay": (t["lr_decay"], "cosine"),
        "train.loss_on": (t["loss_on"], "answer"), "train.max_steps": (t["max_steps"], 0),
    }
    for key, (got, want) in unsupported.items():
        options = want if isinstance(want, tuple) else (want,)  # a tuple lists alternatives
        if got not in options:
            implemented = " or ".join(repr(o) for o in options)
            sys.exit(f"{run_dir}/resolved.toml: {key} = {got!r}; the reference implements {implemented} only")
    if not isinstance(t["eval_every"], str):
        sys.exit(f"{run_dir}/resolved.toml: train.eval_every must be a duration here")
    m.setdefault("activation", "gelu")  # runs from before the key existed
    return m, t, spec["experiment"]["seed"]


def train(args):
    """A run like `runner run`, on that run's own data and settings: evaluate every
    `eval_every`, stop at the target or the budget, score the best evaluation's weights on
    fresh examples. Validation exact match is over the run's val.jsonl."""
    m, t, seed = run_settings(args.run)
    seed = args.seed if args.seed is not None else seed
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    data = {s: load(f"{args.run}/dataset/{s}.jsonl") for s in ("train", "val")}
    fresh = load(args.fresh or f"{args.run}/fresh_1000.jsonl")
    lengths = [len(p) for p, _ in data["train"]]
    arch, layout = m["arch"], LAYOUTS[m["arch"]]
    budget, every = seconds(t["budget"]), seconds(t["eval_every"])
    # train.decay_over: a step count (as the runner: progress after the warm-up over the
    # steps after it), a duration, or "" (the whole budget).
    decay_over = t.get("decay_over") or ""
    if isinstance(decay_over, int):
        after = max(decay_over - t["warmup_steps"], 1)
        progress = lambda: max(trainer.step_no - t["warmup_steps"], 0) / after
    else:
        decay = seconds(decay_over) if decay_over else budget
        progress = lambda: (time.perf_counter() - t0) / decay
    model = build(m)
    trainer = Trainer(model, t["lr"], t["warmup_steps"], weight_decay=t["weight_decay"],
                      clip=t["grad_clip"], min_ratio=t["min_lr_ratio"])
    best, best_state, rows = -1.0, None, []
    t0 = time.perf_counter()
    next_eval, done = every, False
    while not done:
        for idx in epoch_batches(lengths, t["batch_size"], rng):
            trainer.step(layout([data["train"][i] for i in idx]), progress())
            elapsed = time.perf_counter() - t0
            if elapsed < next_eval and elapsed < budget:
                continue
            exact = exact_match(model, data["val"], arch)
            rows.append((trainer.step_no, time.perf_counter() - t0, exact))
            if exact > best:
                best, best_state = exact, copy.deepcopy(model.state_dict())
            next_eval += every
            if exact >= t["target_exact"] or elapsed >= budget:
                done = True
                break
    wall = time.perf_counter() - t0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("step,elapsed_s,val_exact\n")
        f.writelines(f"{s},{e:.3f},{x}\n" for s, e, x in rows)
    model.load_state_dict(best_state)
    to99 = next((e for _, e, x in rows if x >= 0.99), None)
    print(json.dumps({"arch": arch, "run": args.run, "seed": seed, "threads": args.threads,
                      "steps": trainer.step_no, "wall_s": wall, "best_val_exact": best,
                      "s_to_99": to99, "fresh_exact": exact_match(model, fresh, arch),
                      "samples_per_s": trainer.step_no * t["batch_size"] / wall}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--pool", required=True, help="JSONL of examples to train on")
    b.add_argument("--arch", required=True, choices=sorted(LAYOUTS))
    b.add_argument("--batch-size", type=int, default=64)
    t = sub.add_parser("train")
    t.add_argument("--run", required=True, help="a runner run directory: its resolved.toml "
                   "and dataset/ are used")
    t.add_argument("--fresh", help="JSONL to score at the end (default: RUN/fresh_1000.jsonl)")
    t.add_argument("--seed", type=int, help="default: the run's seed")
    t.add_argument("--out", required=True, help="metrics CSV to write")
    pr = sub.add_parser("profile")
    pr.add_argument("--pool", required=True, help="JSONL of examples to train on")
    pr.add_argument("--arch", required=True, choices=sorted(LAYOUTS))
    pr.add_argument("--batch-size", type=int, default=64)
    pr.add_argument("--steps", type=int, default=30)
    pr.add_argument("--rows", type=int, default=15, help="operators to list")
    for p in (b, t, pr):
        p.add_argument("--threads", type=int, default=1)
    b.add_argument("--batching", choices=["bucketed", "shuffled"], default="bucketed")
    b.add_argument("--pad-to", type=int, default=0, help="pad every batch to this width")
    b.add_argument("--windows", type=int, default=5)
    b.add_argument("--window-steps", type=int, default=30)
    args = parser.parse_args()
    {"bench": bench, "train": train, "profile": profile}[args.command](args)


if __name__ == "__main__":
    main()
