"""FSRCNN (Dong, Loy, Tang, ECCV 2016) and the SRCNN 9-1-5 baseline: the one model definition.

Every export (ONNX, TFLite) derives from these modules. Inputs and outputs are
Y images scaled to 0..1, NCHW.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from edge_runtime.files import write_json

DECONV_KERNEL = 9
DECONV_PAD = DECONV_KERNEL // 2  # what a checkpoint without `deconv_pad` in its config was trained with
# What new training uses: padding 3 centres the x3 head (FSRCNNConfig.deconv_pad). At x4 it was measured
# worse on a body trained for padding 4 (a least-squares head: FSRCNN-s Set5 30.046 against 30.095, TRAINING.md).
TRAIN_PAD = {2: 4, 3: 3, 4: 4}


@dataclass(frozen=True)
class FSRCNNConfig:
    d: int = 56  # feature dimension (first and expanding layers)
    s: int = 12  # shrunk dimension (mapping layers)
    m: int = 4  # number of 3x3 mapping layers
    scale: int = 3
    # The deconvolution's padding. 4 (the default, for checkpoints saved before the field; the shipped x2 and
    # x4 models) puts the kernel's centre tap on HR pixel scale*i, which at x3 and x4 is 1 and 1.5 HR pixels
    # off LR pixel i's footprint centre (scale*i + (scale-1)/2). 3 (the shipped x3 models) centres it at x3
    # and halves the offset at x4.
    deconv_pad: int = DECONV_PAD
    # LR pixels each image is extended by, mirrored, before the layers (upscale_image; the runtime does the same):
    # set for a model trained padding-free (train.py --context), whose layers never learned zero-padded borders.
    # Mirrored as MATLAB's imresize extends the HR image at its borders, so the extension is what its LR would be.
    border: int = 0

    def __post_init__(self):
        if not 0 <= self.output_padding < self.scale:
            raise ValueError(f"deconv_pad {self.deconv_pad} cannot give an output of exactly {self.scale}x the input")
        if self.border < 0:
            raise ValueError(f"border must be 0 or more, not {self.border}")

    @property
    def output_padding(self) -> int:
        """What makes the output exactly scale x the input: (H-1)*scale + 9 - 2*pad + out_pad = scale*H."""
        return 2 * self.deconv_pad + self.scale - DECONV_KERNEL

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {"fsrcnn": (56, 12, 4), "fsrcnn-s": (32, 5, 1)}
SCALES = (2, 3, 4)


def preset(name: str, scale: int, deconv_pad: int = DECONV_PAD) -> FSRCNNConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(PRESETS)}")
    if scale not in SCALES:
        raise ValueError(f"unsupported scale {scale}; choose from {SCALES}")
    d, s, m = PRESETS[name]
    return FSRCNNConfig(d=d, s=s, m=m, scale=scale, deconv_pad=deconv_pad)


def model_id(name: str, scale: int) -> str:
    """The id every stage names files after: fsrcnn_x2 ... fsrcnn-s_x4."""
    return f"{name}_x{scale}"


def _conv_prelu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.PReLU(cout)]


class FSRCNN(nn.Module):
    """feature extraction 5x5 -> shrink 1x1 -> m x map 3x3 -> expand 1x1 -> 9x9 deconvolution."""

    def __init__(self, config: FSRCNNConfig = FSRCNNConfig()):
        super().__init__()
        c = config
        self.config = c
        layers = _conv_prelu(1, c.d, 5) + _conv_prelu(c.d, c.s, 1)
        for _ in range(c.m):
            layers += _conv_prelu(c.s, c.s, 3)
        layers += _conv_prelu(c.s, c.d, 1)
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(
            c.d, 1, DECONV_KERNEL, stride=c.scale, padding=c.deconv_pad, output_padding=c.output_padding
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for the convolutions, N(0, 0.001) for the deconvolution, as the paper."""
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.deconv.weight, std=0.001)
        nn.init.zeros_(self.deconv.bias)

    # Training sets this: the conv + pixel_shuffle form computes the same function faster on CPU.
    subpixel_head = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subpixel_head:
            return self.forward_subpixel(x)
        return self.deconv(self.body(x))

    def head_as_conv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The deconvolution's (weight, bias) as the conv of the conv + pixel_shuffle form (differentiable)."""
        return deconv_to_subpixel(self.deconv.weight, self.deconv.bias, self.config.scale, self.config.deconv_pad)

    def forward_subpixel(self, x: torch.Tensor) -> torch.Tensor:
        """The same function through the conv + pixel_shuffle form: ~1.5x faster to train on CPU."""
        w, b = self.head_as_conv()
        return F.pixel_shuffle(F.conv2d(self.body(x), w, b, padding=w.shape[-1] // 2), self.config.scale)


def mirror_pad(x: torch.Tensor, border: int) -> torch.Tensor:
    """x extended by `border` pixels on each side of its last two dims, mirrored with the edge pixel repeated
    (numpy's "symmetric", OpenCV's BORDER_REFLECT)."""
    if not border:
        return x
    x = torch.cat([x[..., :border, :].flip(-2), x, x[..., -border:, :].flip(-2)], -2)
    return torch.cat([x[..., :border].flip(-1), x, x[..., -border:].flip(-1)], -1)


def crop_border(t: torch.Tensor, edge: int) -> torch.Tensor:
    """t without `edge` pixels on each side of its last two dims: an output's part that read no padding."""
    return t[..., edge:t.shape[-2] - edge, edge:t.shape[-1] - edge] if edge else t


def upscale_image(model: "FSRCNN", x: torch.Tensor) -> torch.Tensor:
    """The model on whole images (N, 1, h, w) -> (N, 1, h*scale, w*scale), borders as it was trained for: zero
    padding, or, for a padding-free model, the image mirrored by `config.border` pixels and the output cropped."""
    border, scale = model.config.border, model.config.scale
    return crop_border(model(mirror_pad(x, border)), border * scale)


def receptive_radius(config: FSRCNNConfig) -> int:
    """LR pixels an output pixel's value reaches out from its own LR pixel: the 5x5 layer's 2, one per 3x3
    mapping layer and the head's (as the conv of its conv + pixel_shuffle form). A --context this wide
    makes training padding-free."""
    return 2 + config.m + deconv_to_subpixel(torch.zeros(config.d, 1, DECONV_KERNEL, DECONV_KERNEL), torch.zeros(1),
                                             config.scale, config.deconv_pad)[0].shape[-1] // 2


def dihedral_mean(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of `model`'s outputs over the 8 symmetries of the square (turn or mirror the input, undo it on the
    output): a self-ensemble, about +0.17 dB on Set5 for the shipped FSRCNN at 8x the work. The mean over the whole
    group is equivariant to it, so a turned patch of its output is its output on the turned input."""
    def posed(t: torch.Tensor, pose: int) -> torch.Tensor:  # np.rot90(t, pose), of the transpose for poses 4..7
        return torch.rot90(t.transpose(-2, -1) if pose >= 4 else t, pose % 4, (-2, -1))

    def unposed(t: torch.Tensor, pose: int) -> torch.Tensor:
        t = torch.rot90(t, -(pose % 4), (-2, -1))
        return t.transpose(-2, -1) if pose >= 4 else t

    return sum(unposed(model(posed(x, pose)), pose) for pose in range(8)) / 8


class WeightProduct(nn.Module):
    """A layer's weight W (first dim n) held as mix (n x width) @ basis (width x the rest): the layer trained as
    two linear layers with `width` channels between them, a k x k conv then a 1x1 (a deconvolution: a 1x1 then
    the deconvolution). The product is one layer of the same shape, so the model's function class and its
    exports are unchanged; only the path gradients take differs (linear over-parameterisation: ExpandNets,
    Guo et al. NeurIPS 2020; SESR, Bhardwaj et al. MLSys 2022). It starts as W exactly: basis is W over
    small random rows, mix the identity over zeros."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def forward(self, mix: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return (mix @ basis.flatten(1)).view(mix.shape[0], *basis.shape[1:])

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, spare = weight.shape[0], self.width - weight.shape[0]
        # Scaled so that Adam's first steps on the spare half of mix move W about as far as steps on W would.
        extra = torch.randn(spare, *weight.shape[1:], dtype=weight.dtype, device=weight.device) * weight.std() / spare ** 0.5
        mix = torch.cat([torch.eye(rows, dtype=weight.dtype, device=weight.device), weight.new_zeros(rows, spare)], 1)
        return mix, torch.cat([weight, extra])


def expand_layers(model: FSRCNN, factor: int) -> FSRCNN:
    """Every conv and the deconvolution of `model` trained through `factor` times its channels (WeightProduct),
    in place; `collapsed` (and save_weights) multiply it back out."""
    for module in [*model.body, model.deconv]:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            parametrize.register_parametrization(module, "weight", WeightProduct(factor * module.weight.shape[0]))
    return model


def collapsed(model: FSRCNN) -> FSRCNN:
    """`model` as a plain FSRCNN, any expanded layer's weight multiplied out (`model` itself if none is)."""
    if not any(parametrize.is_parametrized(module) for module in model.modules()):
        return model
    plain = FSRCNN(model.config).to(model.deconv.bias.device)
    with torch.no_grad():
        for target, source in zip([*plain.body, plain.deconv], [*model.body, model.deconv]):
            for name, param in target.named_parameters():
                param.copy_(getattr(source, name))
    return plain


def repad_deconv(weight: torch.Tensor, from_pad: int, to_pad: int) -> torch.Tensor:
    """A 9x9 deconvolution kernel moved from padding `from_pad` to `to_pad`: the same function but for
    the row and column of taps shifted out (the new edge taps start at zero)."""
    shift = from_pad - to_pad  # new tap k reads old tap k + shift
    out = torch.zeros_like(weight)
    n = DECONV_KERNEL - abs(shift)
    src, dst = (shift, 0) if shift >= 0 else (0, -shift)
    out[..., dst:dst + n, dst:dst + n] = weight[..., src:src + n, src:src + n]
    return out


def subpixel_kernel_size(scale: int, pad: int = DECONV_PAD) -> int:
    """Size of the conv that replaces the 9x9 stride-`scale` deconvolution (padding 4: 5 for x2/x3,
    3 for x4; padding 3: 3 for x3 and x4)."""
    last = DECONV_KERNEL - 1
    reach = max(max(math.floor((pad + r) / scale), math.floor((last - pad - r) / scale)) for r in range(scale))
    return 2 * reach + 1


def subpixel_taps(scale: int, deconv_pad: int = DECONV_PAD) -> torch.Tensor:
    """For each (phase, uy, ux) of the rewritten conv: the flat 9x9 deconvolution tap it copies, or 81 (zero).

    Output phase (ry, rx) at LR position i gets input j = i - t through deconvolution tap
    k = scale * t + r + deconv_pad; the conv sees that input at offset u = pad - t.
    """
    k = subpixel_kernel_size(scale, deconv_pad)
    pad = k // 2
    zero = DECONV_KERNEL * DECONV_KERNEL
    taps = torch.full((scale * scale, k, k), zero, dtype=torch.long)
    for ry in range(scale):
        for rx in range(scale):
            for uy in range(k):
                for ux in range(k):
                    ky = scale * (pad - uy) + ry + deconv_pad
                    kx = scale * (pad - ux) + rx + deconv_pad
                    if 0 <= ky < DECONV_KERNEL and 0 <= kx < DECONV_KERNEL:
                        taps[ry * scale + rx, uy, ux] = ky * DECONV_KERNEL + kx
    return taps


def deconv_to_subpixel(weight: torch.Tensor, bias: torch.Tensor, scale: int,
                       deconv_pad: int = DECONV_PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact rewrite of ConvTranspose2d(d, 1, 9, stride=scale, padding=deconv_pad) as a conv to scale^2
    channels followed by pixel_shuffle (depth_to_space). Differentiable, so training can run
    the faster conv form while the parameters stay the paper's 9x9 deconvolution."""
    d = weight.shape[0]
    flat = torch.cat([weight.reshape(d, -1), weight.new_zeros(d, 1)], dim=1)  # d x 82
    taps = subpixel_taps(scale, deconv_pad).to(weight.device)
    conv_w = flat[:, taps].permute(1, 0, 2, 3)  # scale^2 x d x k x k
    return conv_w, bias.expand(scale * scale)


class SubpixelHead(nn.Module):
    """conv (d -> scale^2) + pixel_shuffle: the deployment form of the deconvolution."""

    def __init__(self, model: FSRCNN):
        super().__init__()
        w, b = (t.detach().contiguous() for t in model.head_as_conv())
        self.conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
        with torch.no_grad():
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(b)
        self.scale = model.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), self.scale)


class FSRCNNSubpixel(nn.Module):
    """The same trained FSRCNN with its deconvolution rewritten as conv + depth_to_space."""

    def __init__(self, model: FSRCNN):
        super().__init__()
        self.config = model.config
        self.body = model.body
        self.head = SubpixelHead(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


RELU_FORMS = ("folded", "split")


def _prelu_parts(model: FSRCNN):
    layers = list(model.body)
    convs, prelus = layers[0::2], layers[1::2]
    return [c.weight for c in convs], [c.bias for c in convs], [p.weight for p in prelus]


def _pos_neg(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv that emits [z, -z]: after a ReLU, both halves of a PReLU's input."""
    return torch.cat([weight, -weight]), torch.cat([bias, -bias])


def _reads_split(weight: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Weights that read PReLU(z) = relu(z) - alpha * relu(-z) from the [relu(z), relu(-z)] halves."""
    return torch.cat([weight, -weight * alpha.view(1, -1, 1, 1)], dim=1)


def _split_layers(model: FSRCNN) -> list[tuple[torch.Tensor, torch.Tensor]]:
    weights, biases, alphas = _prelu_parts(model)
    head_w, head_b = model.head_as_conv()
    out = [_pos_neg(weights[0], biases[0])]
    for i in range(1, len(weights)):
        out.append(_pos_neg(_reads_split(weights[i], alphas[i - 1]), biases[i]))
    out.append((_reads_split(head_w, alphas[-1]), head_b))
    return out


def _folded_layers(model: FSRCNN) -> list[tuple[torch.Tensor, torch.Tensor]]:
    weights, biases, alphas = _prelu_parts(model)
    head_w, head_b = model.head_as_conv()
    out = _split_layers(model)[:-2]  # feature, shrink and mapping layers as in the split form
    # expand: relu(z_e), its own input passed through (the head's linear path), and a ones channel
    split_in = _reads_split(weights[-1], alphas[-2])
    copy = torch.eye(split_in.shape[1], dtype=head_w.dtype, device=head_w.device)[:, :, None, None]
    out.append((torch.cat([split_in, copy, copy.new_zeros(1, len(copy), 1, 1)]),
                torch.cat([biases[-1], copy.new_zeros(len(copy)), copy.new_ones(1)])))
    # head: (1 - alpha_e) relu(z_e), plus alpha_e z_e = alpha_e (W_e p + b_e) with the expand composed in
    scaled = head_w * alphas[-1].view(1, -1, 1, 1)
    through = torch.einsum("ojkl,ji->oikl", scaled, weights[-1][:, :, 0, 0])
    ones = torch.einsum("ojkl,j->okl", scaled, biases[-1])[:, None]
    out.append((torch.cat([head_w * (1 - alphas[-1]).view(1, -1, 1, 1), _reads_split(through, alphas[-2]), ones], dim=1),
                head_b))
    return out


def relu_layers(model: FSRCNN, form: str = "folded",
                balance: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of each conv of an INT8 deployment form: every layer conv + ReLU, the last the
    conv + depth_to_space head; computed (differentiably) from `model` and exact in FP32.

    INT8 runtimes fuse conv + ReLU, where a per-channel PReLU stays float (ONNX Runtime) or splits the
    XNNPACK graph (LiteRT). Both forms use PReLU(z) = relu(z) - alpha * relu(-z):
    - "split": every conv emits [z, -z] and the next reads both halves ([W, -W * alpha]); twice the
      channels in and out of every conv.
    - "folded": as "split" up to the mapping layers; then the expand's PReLU(z) = alpha z + (1 - alpha)
      relu(z), its linear part composed into the head: the 1x1 expand passes its input through, plus a
      ones channel that carries its bias exactly up to the image border, and emits relu(z) alone. The
      head, the widest conv, reads d + 2s + 1 channels instead of 2d. (Folding the shrink's linear path
      onto the input as well saves a little more arithmetic, but lost more to INT8 in QAT trials.)

    `balance` (one positive vector per hidden layer) multiplies each hidden channel's conv by a
    gain and divides the next conv's weights for that channel by it: exact, since ReLU commutes
    with a positive scale. INT8 activations share one scale per tensor; gains that give every
    channel the same range let that one scale fit them all (quantize.qat.balance_gains).
    """
    if form not in RELU_FORMS:
        raise ValueError(f"form must be one of {RELU_FORMS}, not {form!r}")
    out = _folded_layers(model) if form == "folded" else _split_layers(model)
    for i, gain in enumerate(balance or []):
        (weight, bias), (following, following_bias) = out[i], out[i + 1]
        out[i] = (weight * gain.view(-1, 1, 1, 1), bias * gain)
        out[i + 1] = (following / gain.view(1, -1, 1, 1), following_bias)
    return out


class FSRCNNReLUForm(nn.Module):
    """The same trained FSRCNN in an INT8 deployment form (see relu_layers)."""

    def __init__(self, model: FSRCNN, form: str = "folded", balance: list[torch.Tensor] | None = None):
        super().__init__()
        self.config = model.config
        self.convs = nn.ModuleList()
        for weight, bias in relu_layers(model, form, balance):
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[-1], padding=weight.shape[-1] // 2)
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            self.convs.append(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.relu(conv(x))
        return F.pixel_shuffle(self.convs[-1](x), self.config.scale)


class SRCNN(nn.Module):
    """SRCNN 9-1-5 (64, 32 filters) on a bicubic-upscaled input: the paper's speed reference."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 1, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def macs_per_lr_pixel(config: FSRCNNConfig) -> int:
    """Multiply-accumulates per input (LR) pixel, the paper's complexity measure."""
    c = config
    body = 25 * c.d + c.d * c.s + c.m * 9 * c.s * c.s + c.s * c.d
    return body + DECONV_KERNEL * DECONV_KERNEL * c.d


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class CheckpointError(Exception):
    """A weights file that is missing, corrupt or not an FSRCNN of the expected shape."""


def save_weights(model: FSRCNN, path, extra: dict | None = None) -> None:
    """`<id>.pt` (a plain FSRCNN's state dict, any expanded layer collapsed; torch.load(weights_only=True)) +
    `<id>.json` (config and provenance), each written to a temp file and renamed so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({k: v.detach().cpu() for k, v in collapsed(model).state_dict().items()}, tmp)
    os.replace(tmp, path)
    meta = {"config": model.config.to_dict(), **(extra or {})}
    write_json(path.with_suffix(".json"), meta)


def load_weights(path, expect_scale: int | None = None) -> FSRCNN:
    """Build the FSRCNN described by `<id>.json` and load `<id>.pt`, with one-line errors."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        config = FSRCNNConfig(**json.loads(meta_path.read_text())["config"])
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing its config file {meta_path.name}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{meta_path}: not an edge-sr checkpoint config ({err})") from None
    if expect_scale is not None and config.scale != expect_scale:
        raise CheckpointError(f"{path}: trained for x{config.scale}, asked for x{expect_scale}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: corrupt or not a weights file ({type(err).__name__})") from None
    model = FSRCNN(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, AttributeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match {config} ({first})") from None
    return model.eval()
