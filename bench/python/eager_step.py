#!/usr/bin/python3
"""The LoRA training step in eager Python PyTorch, for issue 10's CPU comparison.

The step that diffusers 0.27's train_dreambooth_lora_sdxl.py runs with PEFT LoRA on LibTorch 1.13,
written operation for operation in plain PyTorch: the same modules and parameter names as the
checkpoint, the attention of diffusers' `AttnProcessor` (head_to_batch_dim, baddbmm with beta 0,
softmax, bmm, batch_to_head_dim; LibTorch 1.13 has no scaled_dot_product_attention), GEGLU as
chunk(2) then `a * gelu(gate)`, PEFT's `base(x) + B(A(x)) * scaling`, DDPM add_noise, mean MSE,
clip_grad_norm_ and torch.optim.AdamW. diffusers itself cannot be installed here (no PyPI); this
is the stand-in until it is run: it has less Python around each operator than diffusers (no
processor dispatch, no inspect.signature per attention call, no PEFT bookkeeping, no hooks), so
diffusers' step on the same LibTorch should be at least as slow as this one.

Before timing it proves it computes diffusers' numbers (every run unless --no-verify, on the
reference's tiny-sdxl whatever --architecture is timed): the forward must match `vectors/unet_square.safetensors` and two LoRA
steps `vectors/lora_train_plain.safetensors` (loss, gradient norm, weights after AdamW) within the
reference README's tolerances.

Runs on Debian 12's python3-torch (the same libtorch1.13 and BLAS the C++ program uses):
    apt-get install python3-torch python3-numpy
    OMP_NUM_THREADS=1 /usr/bin/python3 bench/python/eager_step.py --batch 4 --resolution 64 --steps 50
    OMP_NUM_THREADS=2 /usr/bin/python3 bench/python/eager_step.py \
        --architecture ../shared/reference/sdxl-base-1.0-manifest/unet.config.json --resolution 128 --steps 3
Prints one JSON object on standard output: per-step seconds (step_s, forward_s, backward_s,
optimizer_s), images/s, host page faults per step, peak RSS, and the verification's differences.
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------- safetensors (no Python package here)

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out


# ---------------------------------------------------------------- the UNet, module for module

def timestep_embedding(t, dim, flip_sin_to_cos=True, shift=0.0, max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.dropout(F.silu(self.norm2(h)), 0.0, self.training))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / 1.0


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim=None):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def head_to_batch_dim(self, t):
        b, n, d = t.shape
        t = t.reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)
        return t.reshape(b * self.heads, n, d // self.heads)

    def batch_to_head_dim(self, t):
        bh, n, d = t.shape
        t = t.reshape(bh // self.heads, self.heads, n, d).permute(0, 2, 1, 3)
        return t.reshape(bh // self.heads, n, d * self.heads)

    def forward(self, x, context=None):
        context = x if context is None else context
        q = self.head_to_batch_dim(self.to_q(x))
        k = self.head_to_batch_dim(self.to_k(context))
        v = self.head_to_batch_dim(self.to_v(context))
        empty = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype)
        probs = torch.baddbmm(empty, q, k.transpose(-1, -2), beta=0, alpha=self.scale).softmax(dim=-1).to(q.dtype)
        out = self.batch_to_head_dim(torch.bmm(probs, v))
        return self.to_out[1](self.to_out[0](out)) / 1.0


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim // heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim // heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    def __init__(self, dim, heads, layers, context_dim, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, heads, context_dim) for _ in range(layers)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x, context):
        b, c, h, w = x.shape
        residual = x
        x = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c))
        for block in self.transformer_blocks:
            x = block(x, context)
        x = self.proj_out(x).reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        return x + residual


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, size=None):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") if size is None else F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class Block(nn.Module):
    """Down, mid and up blocks: resnets, optional attentions, optional resampler."""


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = cfg["block_out_channels"]
        heads = cfg.get("num_attention_heads") or cfg["attention_head_dim"]
        heads = heads if isinstance(heads, list) else [heads] * len(ch)
        layers = cfg["transformer_layers_per_block"]
        layers = layers if isinstance(layers, list) else [layers] * len(ch)
        g, eps, ctx, n = cfg["norm_num_groups"], cfg["norm_eps"], cfg["cross_attention_dim"], cfg["layers_per_block"]
        temb = ch[0] * 4
        self.time_dim, self.add_time_dim = ch[0], cfg["addition_time_embed_dim"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.add_embedding = TimestepEmbedding(cfg["projection_class_embeddings_input_dim"], temb)
        self.down_blocks = nn.ModuleList()
        cout = ch[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, cout = cout, ch[i]
            blk = Block()
            blk.resnets = nn.ModuleList([Resnet(cin if j == 0 else cout, cout, temb, g, eps) for j in range(n)])
            if kind.startswith("CrossAttn"):
                blk.attentions = nn.ModuleList([Transformer2D(cout, heads[i], layers[i], ctx, g) for _ in range(n)])
            if i < len(ch) - 1:
                blk.downsamplers = nn.ModuleList([Downsample(cout)])
            self.down_blocks.append(blk)
        self.mid_block = Block()
        self.mid_block.attentions = nn.ModuleList([Transformer2D(ch[-1], heads[-1], layers[-1], ctx, g)])
        self.mid_block.resnets = nn.ModuleList([Resnet(ch[-1], ch[-1], temb, g, eps) for _ in range(2)])
        self.up_blocks = nn.ModuleList()
        rch, rheads, rlayers = ch[::-1], heads[::-1], layers[::-1]
        cout = rch[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, cout, cin = cout, rch[i], rch[min(i + 1, len(ch) - 1)]
            blk = Block()
            blk.resnets = nn.ModuleList([
                Resnet((prev if j == 0 else cout) + (cin if j == n else cout), cout, temb, g, eps) for j in range(n + 1)])
            if kind.startswith("CrossAttn"):
                blk.attentions = nn.ModuleList([Transformer2D(cout, rheads[i], rlayers[i], ctx, g) for _ in range(n + 1)])
            if i < len(ch) - 1:
                blk.upsamplers = nn.ModuleList([Upsample(cout)])
            self.up_blocks.append(blk)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, sample, timestep, context, text_embeds, time_ids):
        factor = 2 ** (len(self.up_blocks) - 1)
        forward_size = any(s % factor != 0 for s in sample.shape[-2:])
        t = timestep.expand(sample.shape[0])
        emb = self.time_embedding(timestep_embedding(t, self.time_dim).to(sample.dtype))
        time_embeds = timestep_embedding(time_ids.flatten(), self.add_time_dim).reshape(text_embeds.shape[0], -1)
        emb = emb + self.add_embedding(torch.concat([text_embeds, time_embeds], dim=-1).to(emb.dtype))
        x = self.conv_in(sample)
        res = (x,)
        for blk in self.down_blocks:
            attns = getattr(blk, "attentions", None)
            for j, resnet in enumerate(blk.resnets):
                x = resnet(x, emb)
                if attns is not None:
                    x = attns[j](x, context)
                res += (x,)
            if hasattr(blk, "downsamplers"):
                x = blk.downsamplers[0](x)
                res += (x,)
        x = self.mid_block.resnets[0](x, emb)
        x = self.mid_block.attentions[0](x, context)
        x = self.mid_block.resnets[1](x, emb)
        for i, blk in enumerate(self.up_blocks):
            skips = res[-len(blk.resnets):]
            res = res[:-len(blk.resnets)]
            size = res[-1].shape[2:] if forward_size and i < len(self.up_blocks) - 1 else None
            attns = getattr(blk, "attentions", None)
            for j, resnet in enumerate(blk.resnets):
                x = resnet(torch.cat([x, skips[-1 - j]], dim=1), emb)
                if attns is not None:
                    x = attns[j](x, context)
            if hasattr(blk, "upsamplers"):
                x = blk.upsamplers[0](x, size)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ---------------------------------------------------------------- PEFT's LoRA layer

class LoraLinear(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        self.lora_dropout = nn.Identity()
        self.scaling = alpha / rank
        nn.init.normal_(self.lora_A.weight, std=1 / rank)  # init_lora_weights="gaussian"
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        result = self.base_layer(x)
        dtype = result.dtype
        x = x.to(self.lora_A.weight.dtype)
        result = result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return result.to(dtype)


def add_lora(unet, rank, alpha):
    """LoRA on to_q/to_k/to_v/to_out.0 of every attention; returns {module path: LoraLinear}."""
    adapters = {}
    for name, module in list(unet.named_modules()):
        if isinstance(module, Attention):
            for target in ("to_q", "to_k", "to_v"):
                adapters[f"{name}.{target}"] = LoraLinear(getattr(module, target), rank, alpha)
                setattr(module, target, adapters[f"{name}.{target}"])
            adapters[f"{name}.to_out.0"] = LoraLinear(module.to_out[0], rank, alpha)
            module.to_out[0] = adapters[f"{name}.to_out.0"]
    return adapters


# ---------------------------------------------------------------- the training step

def alphas_cumprod(scheduler_cfg):
    betas = torch.linspace(scheduler_cfg["beta_start"] ** 0.5, scheduler_cfg["beta_end"] ** 0.5,
                           scheduler_cfg["num_train_timesteps"], dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def add_noise(acp, x, noise, t):
    a = acp[t].flatten()
    while a.dim() < x.dim():
        a = a.unsqueeze(-1)
    return a ** 0.5 * x + (1 - a) ** 0.5 * noise


class Step:
    def __init__(self, unet, adapters, acp, lr=1e-3, max_grad_norm=1.0):
        self.unet, self.acp, self.max_grad_norm = unet, acp, max_grad_norm
        self.params = [p for a in adapters.values() for p in (a.lora_A.weight, a.lora_B.weight)]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.999), weight_decay=1e-4, eps=1e-8)
        self.times = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def __call__(self, latents, noise, t, context, text_embeds, time_ids):
        t0 = time.perf_counter()
        noisy = add_noise(self.acp, latents, noise, t)
        pred = self.unet(noisy, t, context, text_embeds, time_ids)
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        t3 = time.perf_counter()
        self.times["forward"] += t1 - t0
        self.times["backward"] += t2 - t1
        self.times["optimizer"] += t3 - t2
        return loss.detach(), norm


# ---------------------------------------------------------------- verification against diffusers' numbers

def verify(unet_dir, vectors):
    cfg = json.load(open(os.path.join(unet_dir, "config.json")))
    weights = read_safetensors(os.path.join(unet_dir, "diffusion_pytorch_model.safetensors"))
    scheduler = json.load(open(os.path.join(unet_dir, "..", "scheduler", "scheduler_config.json")))
    unet = UNet(cfg)
    unet.load_state_dict(weights, strict=True)
    unet.eval()
    v = read_safetensors(os.path.join(vectors, "unet_square.safetensors"))
    with torch.no_grad():
        out = unet(v["sample"], v["timestep"], v["encoder_hidden_states"], v["text_embeds"], v["time_ids"])
    forward_err = (out - v["out"]).abs().max().item()
    if not forward_err <= 1e-4:
        sys.exit(f"eager_step: forward differs from vectors/unet_square.safetensors by {forward_err:.3g} (> 1e-4)")

    unet.train()
    adapters = add_lora(unet, 4, 4.0)
    lt = read_safetensors(os.path.join(vectors, "lora_train_plain.safetensors"))
    with torch.no_grad():
        for name, a in adapters.items():
            a.lora_A.weight.copy_(lt[f"init.{name}.lora_A.weight"])
            a.lora_B.weight.copy_(lt[f"init.{name}.lora_B.weight"])
    for p in unet.parameters():
        p.requires_grad_(False)
    for a in adapters.values():
        a.lora_A.weight.requires_grad_(True)
        a.lora_B.weight.requires_grad_(True)
    step = Step(unet, adapters, alphas_cumprod(scheduler))
    worst = {"loss": 0.0, "grad_norm": 0.0}
    close, largest = 1.0, 0.0
    for s in range(2):
        i = {k[len(f"step{s}.input."):]: t for k, t in lt.items() if k.startswith(f"step{s}.input.")}
        loss, norm = step(i["latents"], i["noise"], i["t"], i["ehs"], i["te"], i["tid"])
        worst["loss"] = max(worst["loss"], abs(loss.item() / lt[f"step{s}.loss"].item() - 1))
        worst["grad_norm"] = max(worst["grad_norm"], abs(norm.item() / lt[f"step{s}.grad_norm_before_clip"].item() - 1))
        # Weights after the AdamW step: <= 1e-5 for 99.5 % of the elements, <= 2 lr for all.
        diffs = torch.cat([(getattr(a, f"lora_{side}").weight.detach() - lt[f"step{s}.after.{name}.lora_{side}.weight"])
                           .abs().flatten() for name, a in adapters.items() for side in ("A", "B")])
        close = min(close, (diffs <= 1e-5).float().mean().item())
        largest = max(largest, diffs.max().item())
    if not (worst["loss"] <= 1e-5 and worst["grad_norm"] <= 1e-4 and close >= 0.995 and largest <= 2e-3):
        sys.exit(f"eager_step: LoRA steps differ from vectors/lora_train_plain.safetensors: {worst}, "
                 f"weights {close:.4f} within 1e-5, max {largest:.3g}")
    return {"forward_max_abs_diff": forward_err, "loss_rel_diff": worst["loss"],
            "grad_norm_rel_diff": worst["grad_norm"], "weights_within_1e-5": close,
            "weights_max_abs_diff": largest}


# ---------------------------------------------------------------- main

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    reference = os.environ.get("SDXL_REFERENCE_DIR", os.path.join(here, "..", "..", "..", "shared", "reference"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--architecture", default=os.path.join(reference, "tiny-sdxl", "unet", "config.json"),
                   help="a UNet config.json; random weights of its shapes")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-verify", action="store_true", help="skip the check against the reference vectors")
    args = p.parse_args()

    result = {"program": "bench/python/eager_step.py", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "architecture": args.architecture}
    if not args.no_verify:
        result["verified"] = verify(os.path.join(reference, "tiny-sdxl", "unet"), os.path.join(reference, "vectors"))

    torch.manual_seed(0)
    cfg = json.load(open(args.architecture))
    unet = UNet(cfg)
    unet.train()
    for p_ in unet.parameters():
        p_.requires_grad_(False)
    adapters = add_lora(unet, args.rank, float(args.rank))
    acp = alphas_cumprod({"beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000})
    step = Step(unet, adapters, acp)
    b, s = args.batch, args.resolution // 8
    tokens_dim = cfg["cross_attention_dim"]
    text_dim = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
    context = torch.randn(b, 77, tokens_dim)
    text_embeds = torch.randn(b, text_dim)
    time_ids = torch.tensor([[args.resolution, args.resolution, 0, 0, args.resolution, args.resolution]] * b,
                            dtype=torch.float32)
    latents = torch.randn(b, cfg["in_channels"], s, s)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            step.times = dict.fromkeys(step.times, 0.0)
            faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (b,))
        loss, _ = step(latents, noise, t, context, text_embeds, time_ids)
        loss.item()  # the script logs the loss every step
    wall = (time.perf_counter() - start) / args.steps
    result.update({
        "batch": b, "resolution": args.resolution, "lora_rank": args.rank, "steps": args.steps,
        "warmup": args.warmup,
        "lora_parameters": sum(p_.numel() for p_ in step.params),
        "step_s": wall,
        "forward_s": step.times["forward"] / args.steps,
        "backward_s": step.times["backward"] / args.steps,
        "optimizer_s": step.times["optimizer"] / args.steps,
        "images_per_s": b / wall,
        "host_page_faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / args.steps,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    })
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
