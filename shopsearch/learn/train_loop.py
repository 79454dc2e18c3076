"""The optimisation loop both trainers share, with deterministic checkpoints and resume.

AdamW (an optional parameter group for a freshly initialised head at its own learning rate),
linear warm-up (10 %) and decay, fp16 autocast with a gradient scaler on CUDA, a tqdm bar.
Checkpoints (weights, optimiser, scheduler, scaler, RNG state, losses) every
``checkpoint_every`` steps under ``out_dir/checkpoints``; a run with ``resume=True`` continues
from the last one, and a checkpoint whose run fingerprint (data and parameters) differs is
refused. The finished model goes to ``checkpoints/final`` first and is then moved into
``out_dir``, so ``out_dir`` only ever holds a complete model.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm
from shopsearch.errors import InputError


def pick_device(device: str | None = None) -> str:
    """``device``, or ``cuda`` when available else ``cpu`` for ``None``/``"auto"``."""
    import torch  # why: torch is heavy; loaded only when training
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Checkpoints:
    """``out_dir/checkpoints/step-NNNNNNN.pt`` (atomic), the last ``keep`` kept; ``final/`` before the move."""

    def __init__(self, out_dir: Path, keep: int = 2):
        self.dir, self.keep = Path(out_dir) / "checkpoints", keep

    def latest(self) -> Path | None:
        """The newest checkpoint, if any."""
        found = sorted(self.dir.glob("step-*.pt")) if self.dir.is_dir() else []
        return found[-1] if found else None

    def save(self, step: int, state: dict) -> Path:
        """``state`` as ``step-NNNNNNN.pt`` (temp file + rename); older ones beyond ``keep`` removed."""
        import torch  # why: torch is heavy; loaded only when training
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step-{step:07d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        for old in sorted(self.dir.glob("step-*.pt"))[:-self.keep]:
            old.unlink()
        return path

    @property
    def final(self) -> Path:
        return self.dir / "final"

    def final_complete(self) -> bool:
        """Whether ``final/`` holds a fully saved model (its ``.complete`` marker)."""
        return (self.final / ".complete").exists()

    def publish_final(self, out_dir: Path) -> None:
        """Move the finished model from ``final/`` into ``out_dir`` (file renames), then drop the checkpoints."""
        for f in sorted(self.final.rglob("*")):
            if f.is_file() and f.name != ".complete":
                target = out_dir / f.relative_to(self.final)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, target)
        shutil.rmtree(self.dir)


def _rng_state() -> dict:
    import torch  # why: torch is heavy; loaded only when training
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch  # why: torch is heavy; loaded only when training
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch  # why: torch is heavy; loaded only when training
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingLoop:
    """The shared optimisation loop: AdamW, warm-up + linear decay, fp16 on CUDA, checkpoints, resume."""

    def __init__(self, kind: str, module, out_dir: Path, device: str, lr: float, total_steps: int, fingerprint: str,
                 checkpoint_every: int, resume: bool, progress: bool, on_step, head: str | None = None,
                 head_lr: float | None = None):
        import torch  # why: torch is heavy; loaded only when training
        self.kind, self.module, self.out_dir, self.device = kind, module, Path(out_dir), device
        self.total, self.fingerprint, self.every, self.on_step = total_steps, fingerprint, max(1, checkpoint_every), on_step
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]  # LoRA freezes the base weights
        groups = [{"params": [p for n, p in named if not (head and n.startswith(head))], "lr": lr}]
        if head:  # a freshly initialised head learns at its own (higher) rate
            groups.append({"params": [p for n, p in named if n.startswith(head)], "lr": head_lr or lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
        warmup = max(1, int(0.1 * total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))
        self.amp = device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.checkpoints, self.start, self.losses, self.resumed_from = Checkpoints(self.out_dir), 0, [], None
        latest = self.checkpoints.latest() if resume else None
        if latest is not None:
            state = torch.load(latest, map_location="cpu", weights_only=False)
            if state["fingerprint"] != fingerprint:
                raise InputError(f"{latest} belongs to another run (other data or parameters): "
                                 "pass resume=False to start over, or train into another directory")
            module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
            self.start, self.losses, self.resumed_from = state["step"], state["losses"], state["step"]
        elif not resume and self.checkpoints.dir.exists():
            shutil.rmtree(self.checkpoints.dir)
        self.bar = tqdm(total=total_steps, initial=self.start, desc=kind, disable=not progress, unit="step")

    def autocast(self):
        """fp16 autocast on CUDA, a no-op on CPU."""
        import torch  # why: torch is heavy; loaded only when training
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.amp)

    def step(self, step: int, loss) -> None:
        """Backward, clip, optimiser and scheduler step; a checkpoint every ``checkpoint_every`` steps."""
        import torch  # why: torch is heavy; loaded only when training
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in self.module.parameters() if p.requires_grad], 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        value = float(loss.detach())
        self.losses.append(round(value, 5))
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{value:.4f}")
        done = step + 1
        if done % self.every == 0 and done < self.total:
            self.checkpoints.save(done, {"step": done, "fingerprint": self.fingerprint, "losses": self.losses,
                                         "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                                         "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                                         "rng": _rng_state()})
        if self.on_step:
            self.on_step(done, value)

    def finish(self, save: Callable[[Path], None]) -> None:
        """``save(final/)``, mark it complete, then move it into ``out_dir`` and drop the checkpoints."""
        self.bar.close()
        final = self.checkpoints.final
        if final.exists():
            shutil.rmtree(final)
        final.mkdir(parents=True)
        save(final)
        (final / ".complete").touch()
        self.checkpoints.publish_final(self.out_dir)


def already_done(out_dir: Path, marker: str) -> str | None:
    """``"done"`` when ``out_dir`` holds a finished model; a crash while moving the final model is finished first."""
    checkpoints = Checkpoints(out_dir)
    if checkpoints.final_complete():
        checkpoints.publish_final(out_dir)
    return "done" if (out_dir / marker).exists() and not checkpoints.dir.exists() else None
