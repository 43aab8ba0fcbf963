"""Trainer against a hand-written PyTorch loop: same model, data, seed, steps, on one CPU thread.

Two models: a 2-layer MLP (32-64-2, batch 64), where per-step overhead shows, and a small CNN (digits-sized 1x8x8
images, batch 64). Each loop is timed several times, alternating, and the best time is kept. The hand-written loop
uses the same AdamW and one-cycle schedule the Trainer uses by default; a second line compares the Trainer without a
schedule to a plain loop. Trainer runs with its defaults (progress lines and history on). PyTorch Lightning is
compared when installed. Target: Trainer <= 1.05x the hand-written loop.
Run: `make bench` or `.venv/bin/python bench/train.py`.
"""
import io
import time
from contextlib import redirect_stdout

import torch
from torch import nn

from workbench.train import Trainer

torch.set_num_threads(1)
EPOCHS = 4


def data(kind: str, n: int = 8192):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g) if kind == "mlp" else torch.rand(n, 1, 8, 8, generator=g)
    y = (x.reshape(n, -1)[:, :4].sum(1) > x.reshape(n, -1)[:, :4].sum(1).median()).long()
    return torch.utils.data.TensorDataset(x, y)


def model(kind: str):
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 2))


def hand_loop(kind: str, schedule: bool) -> float:
    ds = data(kind)
    m = model(kind)
    dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=EPOCHS * len(dl)) if schedule else None
    start = time.perf_counter()
    for _ in range(EPOCHS):
        m.train()
        for xb, yb in dl:
            loss = nn.functional.cross_entropy(m(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
    return time.perf_counter() - start


def trainer(kind: str, schedule: bool) -> float:
    dl = torch.utils.data.DataLoader(data(kind), batch_size=64, shuffle=True)
    t = Trainer(model(kind), dl, lr=1e-3, scheduler="onecycle" if schedule else None, device="cpu")
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()):  # its progress lines are on, only not shown here
        t.fit(EPOCHS)
    return time.perf_counter() - start


def lightning(kind: str) -> float | None:
    try:
        import lightning as L
    except ImportError:
        return None

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.m = model(kind)

        def training_step(self, batch, _):
            return nn.functional.cross_entropy(self.m(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    dl = torch.utils.data.DataLoader(data(kind), batch_size=64, shuffle=True)
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(Module(), dl)
    return time.perf_counter() - start


def main(repeat: int = 7):
    steps = EPOCHS * 8192 // 64
    for kind in ("mlp", "cnn"):
        best = {k: float("inf") for k in ("hand", "trainer", "hand_plain", "trainer_plain")}
        for _ in range(repeat):  # alternate, so drift in the machine's speed hits both alike
            best["hand"] = min(best["hand"], hand_loop(kind, True))
            best["trainer"] = min(best["trainer"], trainer(kind, True))
            best["hand_plain"] = min(best["hand_plain"], hand_loop(kind, False))
            best["trainer_plain"] = min(best["trainer_plain"], trainer(kind, False))
        ms = {k: 1000 * v / steps for k, v in best.items()}
        print(f"{kind}: {steps} steps, batch 64, 1 CPU thread")
        print(f"  hand-written loop, one-cycle: {ms['hand']:.3f} ms/step")
        print(f"  Trainer defaults:             {ms['trainer']:.3f} ms/step   ratio {best['trainer'] / best['hand']:.3f}x (target <= 1.05x)")
        print(f"  hand-written loop, no sched:  {ms['hand_plain']:.3f} ms/step")
        print(f"  Trainer scheduler=None:       {ms['trainer_plain']:.3f} ms/step   ratio {best['trainer_plain'] / best['hand_plain']:.3f}x")
        lt = lightning(kind)
        if lt is None:
            print("  Lightning: not installed")
        else:
            print(f"  Lightning (no bar/logger/ckpt): {1000 * lt / steps:.3f} ms/step   ratio {lt / best['hand_plain']:.3f}x")


if __name__ == "__main__":
    main()
