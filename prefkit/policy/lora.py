"""LoRA and QLoRA through PEFT: adapters on a loaded model, the reference as "adapters off",
and the two outputs (the adapter directory and the merged model).

LoRA (Hu et al. 2021, arXiv:2106.09685, eq. 3) trains ``h = W x + (alpha / r) B A x`` with ``W``
frozen, ``A`` random and ``B = 0`` at the start, so the initial policy *is* the base model. The
reference is therefore the same PEFT model run under ``disable_adapter()`` (:class:`AdaptersOff`),
exact while ``B`` starts at zero, with no second copy of the weights in memory. QLoRA (Dettmers
et al. 2023, arXiv:2305.14314) loads ``W`` quantized by bitsandbytes (NF4 with double
quantization, or LLM.int8) on CUDA; the trainable adapter weights are cast to the compute dtype
as TRL's DPOTrainer does, not through ``peft.prepare_model_for_kbit_training`` (whose float32
upcast of every non-quantized weight breaks FSDP's uniform dtype and costs memory).

Outputs: :func:`save_adapter` writes a PEFT adapter directory (``PeftModel.from_pretrained(base,
DIR)`` loads it); :func:`save_plain` writes the merged model ``W + (alpha / r) B A`` (or the base
alone) as an ordinary Hugging Face directory that ``AutoModelForCausalLM.from_pretrained`` (or
``AutoModel`` for a preference-model backbone) loads without PEFT. Merging happens on CPU copies,
layer by layer, so the trained model is never modified (no merge/unmerge rounding).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefkit.config.schema import LORA_ALL_LINEAR, LoraConfig
from prefkit.errors import InputError
from prefkit.policy._hf import unwrap

TaskType = str
"""PEFT's task type: ``CAUSAL_LM`` for policies, ``FEATURE_EXTRACTION`` for backbones."""

_QUANTIZED_WEIGHTS = ("Params4bit", "Int8Params")
"""bitsandbytes parameter classes (their data is packed; :func:`merged_state_dict` dequantizes)."""


# ----------------------------------------------------------------------------- availability

def require_peft() -> Any:
    """The ``peft`` module, or an error naming the key and the extra to install."""
    try:
        import peft
    except ImportError:
        raise InputError("lora.r > 0 trains LoRA adapters through PEFT, which is not installed: "
                         "pip install 'prefkit[peft]'", field="lora.r") from None
    return peft


def is_lora(model: nn.Module) -> bool:
    """Whether ``model`` (or the model inside a DDP/compile wrapper) is a PEFT model."""
    peft = sys.modules.get("peft")  # a PEFT model cannot exist unless peft was imported
    return peft is not None and isinstance(unwrap(model), peft.PeftModel)


def quantization_config(lora: LoraConfig, device: torch.device, precision: str) -> Any | None:
    """The bitsandbytes ``BitsAndBytesConfig`` of ``lora.quantize`` (``None`` for ``none``).

    Refuses, naming ``lora.quantize``, a machine without CUDA or without bitsandbytes, and a
    quantized base without adapters (``lora.r=0``: nothing could train).
    """
    if lora.quantize == "none":
        return None
    if not lora.enabled:
        raise InputError(f"lora.quantize={lora.quantize} freezes the quantized base and trains LoRA adapters "
                         "on it: set lora.r > 0", field="lora.quantize")
    if device.type != "cuda" or not torch.cuda.is_available():
        raise InputError(f"lora.quantize={lora.quantize} needs a CUDA device (bitsandbytes quantization runs on "
                         f"NVIDIA GPUs) and this run is on {device}; use lora.quantize=none (plain LoRA) here",
                         field="lora.quantize")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError(f"lora.quantize={lora.quantize} needs bitsandbytes: pip install bitsandbytes "
                         "(or lora.quantize=none)", field="lora.quantize") from None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if precision == "bf16" else torch.float32
    if lora.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)


def device_map(device: torch.device) -> dict[str, torch.device]:
    """``from_pretrained``'s ``device_map`` placing a quantized model whole on ``device`` (a bare
    ``cuda`` is the current CUDA device)."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return {"": device}


# ----------------------------------------------------------------------------- wrapping

@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """PEFT still calls transformers' deprecated ``is_gradient_checkpointing`` (a FutureWarning
    on every wrap and save that says nothing to a prefkit user)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def check_targets(model: nn.Module, lora: LoraConfig) -> None:
    """Every name in ``lora.target_modules`` matches a module of ``model`` (its full name or its
    last components, PEFT's rule for a list); an error naming the key otherwise."""
    if lora.target_modules == LORA_ALL_LINEAR:
        return
    names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in lora.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise InputError(f"lora.target_modules: {missing} match no module of this "
                         f"{type(model).__name__}; its linear layers are named {linear} "
                         "(or use lora.target_modules=all-linear)", field="lora.target_modules")


def apply_lora(model: nn.Module, lora: LoraConfig, *, task_type: TaskType = "CAUSAL_LM", seed: int = 0,
               quantized: bool = False, compute_dtype: torch.dtype = torch.float32) -> nn.Module:
    """``model`` with LoRA adapters of rank ``lora.r`` on ``lora.target_modules`` (PEFT's
    ``get_peft_model``): the base weights frozen, ``A`` drawn from ``seed`` (the global random
    state is untouched), ``B = 0``. ``quantized``: the base was loaded by bitsandbytes; the
    adapter weights are then cast to ``compute_dtype`` (TRL's rule; DoRA magnitudes excepted)."""
    peft = require_peft()
    if not lora.enabled:
        raise ValueError("apply_lora needs lora.r > 0")
    if is_lora(model):
        raise InputError("this model already carries PEFT adapters: set lora.r=0 to train them as they are, "
                         "or merge them (merge_and_unload) before adding new ones", field="lora.r")
    check_targets(model, lora)
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, bias="none", task_type=task_type)
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    # ZeRO-3 gathers parameters in the dtype of the first one: keep the adapters in the base's
    # dtype there (PEFT otherwise upcasts them to float32; TRL does the same, trl#6089).
    keep_dtype = {"autocast_adapter_dtype": False} if deepspeed_zero3() and not quantized else {}
    with torch.random.fork_rng(devices=devices), _quiet_peft():
        torch.manual_seed(seed)
        try:
            wrapped = peft.get_peft_model(model, config, **keep_dtype)
        except ValueError as error:  # PEFT's NoMatchingPeftModuleError is a ValueError
            raise InputError(f"lora.target_modules={lora.target_modules!r}: {error}",
                             field="lora.target_modules") from error
    if quantized:
        for name, param in wrapped.named_parameters():
            if param.requires_grad and "lora_magnitude_vector" not in name:
                param.data = param.data.to(compute_dtype)
    return wrapped


def deepspeed_zero3() -> bool:
    """Whether this process was launched by ``accelerate launch`` with DeepSpeed ZeRO stage 3."""
    return (os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true")
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def supports_checkpointing(model: nn.Module) -> bool:
    return any(callable(getattr(model, name, None))
               for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"))


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Activation checkpointing (non-reentrant; ``activation_checkpointing_enable`` where
    transformers has it, its older name otherwise); a PEFT model also gets input gradients on
    its embeddings (``enable_input_require_grads``), which reentrant checkpointing with frozen
    embeddings needs (TRL does the same). PEFT under DeepSpeed ZeRO-3 needs reentrant
    checkpointing (trl#2514), so it gets that."""
    kwargs = {"use_reentrant": is_lora(model) and deepspeed_zero3()}
    enable = getattr(model, "activation_checkpointing_enable", None)
    if callable(enable):
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if is_lora(model):
        unwrap(model).enable_input_require_grads()


def trainable_counts(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (quantized weights counted by their elements)."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)  # two 4-bit values per byte
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


# ----------------------------------------------------------------------------- base and merged weights

def _adapter_layer_names() -> frozenset[str]:
    from peft.tuners.lora import LoraLayer

    return frozenset(LoraLayer.adapter_layer_names)


def _plain_name(parts: list[str]) -> str:
    return ".".join(p for p in parts if p != "base_layer")


def _check_plain_lora(model: nn.Module) -> Any:
    peft = require_peft()
    inner = unwrap(model)
    if not isinstance(inner, peft.PeftModel):
        raise TypeError(f"expected a PEFT model, got {type(inner).__name__}")
    config = inner.peft_config[inner.active_adapter]
    if not isinstance(config, peft.LoraConfig) or getattr(config, "modules_to_save", None):
        raise ValueError("only LoRA adapters without modules_to_save can be merged or disabled by prefkit")
    return inner


def base_state_dict(model: nn.Module, *, keep_vars: bool = False) -> dict[str, torch.Tensor]:
    """The base model's tensors under the names the plain model has (adapters left out,
    ``.base_layer`` dropped): the state dict of the model before ``get_peft_model``."""
    inner = _check_plain_lora(model)
    skip = _adapter_layer_names()
    out = {}
    for key, tensor in inner.get_base_model().state_dict(keep_vars=keep_vars).items():
        parts = key.split(".")
        if skip.isdisjoint(parts):
            out[_plain_name(parts)] = tensor
    return out


def _dequantized(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    if type(weight).__name__ not in _QUANTIZED_WEIGHTS:
        return weight.detach()
    from peft.utils.integrations import dequantize_module_weight

    return dequantize_module_weight(module).detach()


@torch.no_grad()
def merged_state_dict(model: nn.Module, *, merge: bool = True,
                      device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The plain model's state dict on ``device``: each adapted weight ``W + (alpha / r) B A``
    (PEFT's ``get_delta_weight``, added as ``merge_and_unload`` adds it), or ``W`` alone with
    ``merge=False``; quantized weights dequantized. Computed layer by layer on copies: the
    PEFT model itself is not modified. Tied weights stay one tensor."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    inner = _check_plain_lora(model)
    adapter = inner.active_adapter
    base = inner.get_base_model()
    skip = _adapter_layer_names()
    owner = {id(m.get_base_layer()): m for m in base.modules() if isinstance(m, BaseTunerLayer)}
    out: dict[str, torch.Tensor] = {}
    made: dict[int, torch.Tensor] = {}
    for name, module in base.named_modules():
        parts = name.split(".") if name else []
        if not skip.isdisjoint(parts) or isinstance(module, BaseTunerLayer):
            continue
        prefix = _plain_name(parts)
        tensors = list(module.named_parameters(recurse=False))
        tensors += [(n, b) for n, b in module.named_buffers(recurse=False)
                    if n not in module._non_persistent_buffers_set]
        for key, tensor in tensors:
            full = f"{prefix}.{key}" if prefix else key
            if id(tensor) in made:
                out[full] = made[id(tensor)]
                continue
            value = _dequantized(module, tensor) if key == "weight" else tensor.detach()
            lora_layer = owner.get(id(module))
            if merge and key == "weight" and lora_layer is not None and adapter in lora_layer.lora_A:
                value = value.clone()
                value += lora_layer.get_delta_weight(adapter).to(value.device)
            made[id(tensor)] = out[full] = value.to(device)  # unmerged CPU tensors are shared, not copied
    return out


def _plain_config(config: Any) -> Any:
    """The config without its quantization (the merged weights are dequantized)."""
    config = copy.deepcopy(config)
    for name in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, name):
            delattr(config, name)
    return config


def save_plain(model: nn.Module, directory: str | os.PathLike[str], *, merge: bool = True) -> None:
    """Write the merged (or, ``merge=False``, the base) model into ``directory`` as an ordinary
    Hugging Face checkpoint (``config.json`` + safetensors; no PEFT files, no quantization)."""
    inner = _check_plain_lora(model)
    base = inner.get_base_model()
    state = merged_state_dict(inner, merge=merge)
    config = _plain_config(base.config)
    with torch.device("meta"):
        plain = type(base)(config)
    plain.load_state_dict(state, strict=True, assign=True)
    generation = getattr(base, "generation_config", None)
    if generation is not None and hasattr(plain, "generation_config"):
        plain.generation_config = copy.deepcopy(generation)
    plain.save_pretrained(directory)


def save_adapter(model: nn.Module, directory: str | os.PathLike[str], *, base_model: str | None = None) -> Path:
    """Write the PEFT adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)
    atomically; ``base_model`` is recorded as its ``base_model_name_or_path``."""
    from prefkit._atomic import atomic_directory

    inner = _check_plain_lora(model)
    config = inner.peft_config[inner.active_adapter]
    if base_model is not None:
        config.base_model_name_or_path = base_model
    target = Path(directory)
    with atomic_directory(target) as staging, _quiet_peft():
        inner.save_pretrained(staging)
    return target


# ----------------------------------------------------------------------------- the reference

def zero_initialised(model: nn.Module) -> bool:
    """Whether every LoRA ``B`` is exactly zero, i.e. the model equals its base (the condition
    under which "adapters off" is the initial policy)."""
    inner = unwrap(model)
    return all(
        not bool(p.detach().any())
        for name, p in inner.named_parameters()
        if ".lora_B." in name or ".lora_embedding_B." in name
    )


class AdaptersOff(nn.Module):
    """The base of a PEFT model as a frozen module: each forward runs the *shared* model under
    ``disable_adapter()``, in eval mode and without gradients, then restores the model's modes.

    It owns no weights. The PEFT model is deliberately not a registered submodule, so
    ``eval()``/``train()``/``to()``/``requires_grad_()`` on the view never touch the trained
    policy; ``parameters()`` and ``state_dict()`` give the base weights under the plain model's
    names (the reference log-prob cache fingerprints these: the same hash as the base model
    loaded without PEFT, unchanged by training). ``get_output_embeddings()`` is the base head,
    so the chunked log-prob path (which applies the head outside the forward) stays adapter-free.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.__dict__["peft_model"] = _check_plain_lora(model)
        self.training = False

    # -- what callers of a causal LM use ------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.active() as model:
            return model(*args, **kwargs)

    @contextlib.contextmanager
    def active(self) -> Iterator[nn.Module]:
        """The PEFT model with adapters disabled, in eval mode, under ``no_grad``."""
        model = self.peft_model
        training = [m for m in model.modules() if m.training]
        for m in training:
            m.training = False
        try:
            with torch.no_grad(), model.disable_adapter():
                yield model
        finally:
            for m in training:
                m.training = True

    def train(self, mode: bool = True) -> AdaptersOff:
        self.training = mode  # the view is frozen; the shared model's mode is the policy's own
        return self

    def get_base_model(self) -> nn.Module:
        """The Hugging Face model inside (for forward-signature checks)."""
        return self.peft_model.get_base_model()

    def get_output_embeddings(self) -> nn.Module | None:
        head = self.get_base_model().get_output_embeddings()
        get_base_layer = getattr(head, "get_base_layer", None)
        return get_base_layer() if callable(get_base_layer) else head

    def get_input_embeddings(self) -> nn.Module:
        embeddings = self.get_base_model().get_input_embeddings()
        get_base_layer = getattr(embeddings, "get_base_layer", None)
        return get_base_layer() if callable(get_base_layer) else embeddings

    @property
    def config(self) -> Any:
        return self.get_base_model().config

    @property
    def generation_config(self) -> Any:
        return getattr(self.get_base_model(), "generation_config", None)

    # -- weights ------------------------------------------------------------------------------

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Parameter]]:
        seen: set[int] = set()
        for name, tensor in base_state_dict(self.peft_model, keep_vars=True).items():
            if isinstance(tensor, nn.Parameter) and not (remove_duplicate and id(tensor) in seen):
                seen.add(id(tensor))
                yield (f"{prefix}.{name}" if prefix else name), tensor

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, torch.Tensor]:
        state = base_state_dict(self.peft_model, keep_vars=keep_vars)
        out = destination if destination is not None else {}
        out.update({prefix + k: v for k, v in state.items()})
        return out

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("AdaptersOff is a frozen view of a PEFT model's base weights; load weights into the "
                        "PEFT model itself")

    def save_pretrained(self, directory: str | os.PathLike[str], **_: Any) -> None:
        """The base model (adapters left out) as an ordinary Hugging Face directory."""
        save_plain(self.peft_model, directory, merge=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> AdaptersOff:
        raise TypeError("copying AdaptersOff would copy the whole shared PEFT model; copy the policy instead")


def adapters_off(model: nn.Module) -> AdaptersOff | None:
    """The "adapters off" view of ``model`` when it is the exact initial policy's base: a PEFT
    LoRA model (no ``modules_to_save``) whose every ``B`` is still zero; ``None`` otherwise (the
    caller then needs a real frozen copy)."""
    if not is_lora(model):
        return None
    try:
        inner = _check_plain_lora(model)
    except ValueError:
        return None
    return AdaptersOff(inner) if zero_initialised(inner) else None
