"""Tiny settings so that every recipe trains a few steps on digits in seconds."""

ENC = ["encoder.name=small_encoder", "encoder.kwargs={channels: [8, 16], hidden: 32}"]
DEC = ["decoder.name=small_unet", "decoder.kwargs={channels: 8, channel_mult: [1, 2], time_dim: 16, cond_dim: 32}"]
COMMON = ["batch_size=64", "latent_dim=8", "eval_batch_size=200", "train.steps=3", "train.warmup_steps=2",
          "train.checkpoint_every=2", "train.log_every=1", "train.progress=false"]
FLOW = ["flow.steps=4", "flow.label_steps=10", "sampler_steps=3", "recon_images=8"]
LR = {
    "generation": "train.lr={encoder: 1.0e-3, decoder: 1.0e-3}",
    "joint": "train.lr={encoder: 1.0e-3, decoder: 1.0e-3, label_anchors: 1.0e-2}",
    "nogen": "train.lr={encoder: 1.0e-3, label_anchors: 1.0e-2}",
    "rf": "train.lr=1.0e-3",
    "representation": "train.lr=1.0e-3",
    "simclr": "train.lr=1.0e-3",
    "classifier": "train.lr=1.0e-3",
    "text": "train.lr=1.0e-3",
    "clip": "train.lr=1.0e-3",
}
TEXT = ["text_encoder=small", "text_width=32", "text_layers=1", "eval_pairs=50"]


def sets(recipe: str) -> list[str]:
    out = COMMON + [LR[recipe]]
    if recipe in ("generation", "joint", "nogen", "rf"):
        out += FLOW + DEC + (ENC if recipe != "rf" else [])
    if recipe in ("representation", "simclr"):
        out += ENC + ["flow.steps=4", "probe_epochs=20"]
    if recipe == "classifier":
        out += ENC
    if recipe == "text":
        out += ENC + DEC + TEXT + ["flow.steps=4", "align_steps=5", "sampler_steps=2", "gen_samples=10"]
    if recipe == "clip":
        out += ENC + TEXT
    return out
