"""The LoRA option of both trainers (peft): low-rank adapters trained, the base weights frozen, merged for serving.

With ``lora_rank`` > 0 (the settings ``lora_rank``, ``lora_alpha``, ``lora_dropout``,
``lora_target_modules``, ``lora_lr``), :func:`shopsearch.learn.train.train_bi_encoder` and
:func:`~shopsearch.learn.train.train_cross_encoder` wrap the transformer in a peft
``LoraConfig`` adapter before the first step: every base weight is frozen and only the
low-rank matrices ``A`` (r x in) and ``B`` (out x r) of the target modules learn (the
cross-encoder's freshly initialised classification head learns too: a random head cannot be
left frozen). Optimiser state and gradients then exist for about 1 % of the weights, which is
what lets a larger encoder (all-mpnet-base-v2, 110 M parameters) be tuned on one GPU.

At the end the adapter is saved on its own, *beside* the model directory
(``<version>/bi-encoder-adapter/``, ``<version>/cross-encoder-adapter/``: ``adapter_config.json``
and ``adapter_model.safetensors``), and then merged into the weights (``W + B A alpha / r``), so
the served ``<version>/bi-encoder/`` stays a plain sentence-transformers model: the encoder loads
it as any other, and the index fingerprint and version logic (``encoders.text.fingerprint``) keep
working. The registry records the adapter's files and options with the version.

The default targets are the attention projections of the two encoder families the project
uses: BERT-style (MiniLM: ``query``, ``key``, ``value``, ``attention.output.dense``) and MPNet
(``q``, ``k``, ``v``, ``o``); names that a model lacks are ignored, but at least one must match.

>>> LoraOptions.from_values(rank=0) is None
True
>>> LoraOptions.from_values(rank=8, target_modules="query, value").target_modules
('query', 'value')
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from shopsearch.errors import InputError

DEFAULT_TARGETS = "query,key,value,attention.output.dense,q,k,v,o"


@dataclass(frozen=True)
class LoraOptions:
    """Rank, scale, dropout, target module names and learning rate of a LoRA fine-tune."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] = tuple(DEFAULT_TARGETS.split(","))
    lr: float = 2e-4

    @classmethod
    def from_values(cls, rank: int, alpha: float = 32.0, dropout: float = 0.1, target_modules: str = DEFAULT_TARGETS,
                    lr: float = 2e-4) -> "LoraOptions | None":
        """Options from plain values (a rank of 0: no LoRA, ``None``); bad values are an :class:`InputError`."""
        if rank == 0:
            return None
        if rank < 0 or alpha <= 0 or not 0 <= dropout < 1 or lr <= 0:
            raise InputError(f"LoRA needs rank > 0, alpha > 0, 0 <= dropout < 1 and lr > 0; got rank={rank}, "
                             f"alpha={alpha}, dropout={dropout}, lr={lr}", field="lora_rank")
        targets = tuple(t.strip() for t in target_modules.split(",") if t.strip())
        if not targets:
            raise InputError("lora_target_modules names no module", field="lora_target_modules")
        return cls(rank, float(alpha), float(dropout), targets, float(lr))

    @classmethod
    def from_settings(cls, settings) -> "LoraOptions | None":
        """The configured options, or ``None`` when ``lora_rank`` is 0 (full fine-tuning)."""
        return cls.from_values(settings.lora_rank, settings.lora_alpha, settings.lora_dropout,
                               settings.lora_target_modules, settings.lora_lr)

    @classmethod
    def from_dict(cls, values: dict | None) -> "LoraOptions | None":
        """The inverse of :meth:`as_dict` (``None`` stays ``None``: no LoRA).

        >>> LoraOptions.from_dict(LoraOptions(rank=4).as_dict()) == LoraOptions(rank=4)
        True
        """
        if not values:
            return None
        return cls.from_values(**{**values, "target_modules": ",".join(values["target_modules"])})

    def as_dict(self) -> dict:
        return {**asdict(self), "target_modules": list(self.target_modules)}


def adapter_dir(model_dir: str | os.PathLike) -> Path:
    """Where the adapter of a model directory is kept: beside it, never inside it.

    >>> adapter_dir("/models/ft-1/bi-encoder").as_posix()
    '/models/ft-1/bi-encoder-adapter'
    """
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + "-adapter")


def wrap(module, options: LoraOptions, classifier: bool = False):
    """``module`` (a transformers model) with LoRA adapters on the target modules; base weights frozen.

    ``classifier``: a sequence-classification model, whose head is trained and saved too.
    """
    from peft import LoraConfig, TaskType, get_peft_model  # why: peft pulls in torch and transformers; only for LoRA runs

    names = {name.rsplit(".", 1)[-1] for name, _ in module.named_modules()}
    present = [t for t in options.target_modules if t.rsplit(".", 1)[-1] in names]
    if not present:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in module.named_modules() if type(m).__name__ == "Linear"})
        raise InputError(f"none of the LoRA target modules {list(options.target_modules)} is in this model; "
                         f"its linear layers are named {linear} (set lora_target_modules)", field="lora_target_modules")
    config = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=present, bias="none", task_type=TaskType.SEQ_CLS if classifier else None)
    try:
        return get_peft_model(module, config)
    except ValueError as e:  # a listed name that is not a layer peft can adapt
        raise InputError(f"LoRA cannot adapt {present}: {e}", field="lora_target_modules") from None


def save_adapter(peft_module, directory: str | os.PathLike) -> Path:
    """Save the adapter weights and config alone into ``directory`` (written aside, then renamed in)."""
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    peft_module.save_pretrained(str(staging))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
    return directory


def merge(peft_module):
    """The plain transformers model with the adapter folded into its weights (for serving)."""
    return peft_module.merge_and_unload()


def attach(module, directory: str | os.PathLike):
    """``module`` with a saved adapter applied, unmerged (what :func:`merge` must reproduce)."""
    from peft import PeftModel  # why: peft pulls in torch and transformers; only for LoRA runs
    return PeftModel.from_pretrained(module, str(directory))


def trainable_share(module) -> dict:
    """How many weights a run trains: ``{"trainable", "total", "share"}``."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    return {"trainable": trainable, "total": total, "share": round(trainable / total, 5) if total else 0.0}
