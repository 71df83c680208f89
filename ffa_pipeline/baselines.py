"""Baselines that any FFA generator must beat, evaluated by `train/evaluate.py` on the same images.

- `inverted_green`: the green channel of a fundus photo, inverted. Vessels and blood absorb green, so they turn
  bright, which is how an early-phase angiogram looks: a training-free look-alike.
- `Pix2PixUNet` + `train_pix2pix`: a small pix2pix-style U-Net (Isola et al. 2017) trained on the same paired data
  with the same step and batch budget as the diffusion model. L1 loss only, no PatchGAN: the adversarial term is
  what makes pix2pix sharp, but it doubles the cost and is unstable with tens of pairs, and an L1 regressor is the
  honest "predict the mean angiogram" reference. The phase enters as a constant input plane (log-scaled seconds
  after injection), so one network serves every phase.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from tqdm.auto import tqdm

from .data import PairedFFADataset
from .vocab import PHASE_SECONDS_RANGE

MAX_DOWN_BLOCKS = 5  # 256 px -> an 8 x 8 bottleneck: enough context for a baseline, small enough for a CPU
CONTRAST_PERCENTILES = (1.0, 99.0)  # the inverted green channel is stretched between these, inside the field of view


def inverted_green(source_rgb: np.ndarray, field_of_view: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 source in [0, 1] -> HxW grey in [0, 1]: 1 - green, contrast-stretched inside the field of view.

    Outside the field of view stays black, as in an angiogram (inverting the black surround would make it white).
    """
    if source_rgb.ndim != 3 or source_rgb.shape[2] != 3:
        raise ValueError(f"`source_rgb` must be HxWx3, got shape {source_rgb.shape}")
    inside = np.ones(source_rgb.shape[:2], bool) if field_of_view is None else np.asarray(field_of_view, bool)
    inverted = 1.0 - source_rgb[..., 1].astype(np.float32)
    if not inside.any():
        return np.zeros_like(inverted)
    low, high = np.percentile(inverted[inside], CONTRAST_PERCENTILES)
    stretched = np.clip((inverted - low) / max(high - low, 1e-6), 0.0, 1.0)
    return np.where(inside, stretched, 0.0).astype(np.float32)


def phase_plane(phase_seconds: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B] seconds -> [B, 1, H, W] constant planes of log(1 + s) / log(1 + max): 10 s and 600 s stay far apart."""
    scaled = torch.log1p(phase_seconds.float()) / math.log1p(PHASE_SECONDS_RANGE[1])
    return scaled.view(-1, 1, 1, 1).expand(-1, 1, height, width)


def default_down_blocks(resolution: int) -> int:
    """As many halvings as the resolution allows, up to `MAX_DOWN_BLOCKS`."""
    blocks = 0
    while blocks < MAX_DOWN_BLOCKS and resolution % 2 ** (blocks + 1) == 0:
        blocks += 1
    if blocks == 0:
        raise ValueError(f"Pix2PixUNet needs an even resolution, got {resolution}")
    return blocks


class Pix2PixUNet(ModelMixin, ConfigMixin):
    """pix2pix's U-Net generator, small: 4x4 stride-2 convs down, transposed convs up, skip connections between.

    Input: the source RGB in [-1, 1] plus one phase plane; output: the grey angiogram in [-1, 1] (tanh).
    GroupNorm instead of BatchNorm (batches of 4 or fewer); no dropout (it is pix2pix's noise source for the GAN,
    which this L1-only baseline does not have). `save_pretrained` writes safetensors.
    """

    @register_to_config
    def __init__(self, source_channels: int = 3, out_channels: int = 1, base_channels: int = 32,
                 max_channels: int = 256, num_down_blocks: int = 4, norm_num_groups: int = 8):
        super().__init__()
        widths = [min(base_channels * 2**i, max_channels) for i in range(num_down_blocks)]
        self.down = nn.ModuleList()
        previous = source_channels + 1
        for i, width in enumerate(widths):
            # pix2pix leaves the first and the innermost layer unnormalised
            normalise = 0 < i < num_down_blocks - 1
            self.down.append(nn.Sequential(
                nn.Conv2d(previous, width, 4, stride=2, padding=1),
                nn.GroupNorm(norm_num_groups, width) if normalise else nn.Identity(),
                nn.LeakyReLU(0.2),
            ))
            previous = width
        self.up = nn.ModuleList()
        for i in range(num_down_blocks - 1, 0, -1):
            incoming = widths[i] if i == num_down_blocks - 1 else 2 * widths[i]
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(incoming, widths[i - 1], 4, stride=2, padding=1),
                nn.GroupNorm(norm_num_groups, widths[i - 1]),
                nn.ReLU(),
            ))
        incoming = widths[0] if num_down_blocks == 1 else 2 * widths[0]
        self.head = nn.ConvTranspose2d(incoming, out_channels, 4, stride=2, padding=1)

    def forward(self, source: torch.Tensor, phase_seconds: torch.Tensor) -> torch.Tensor:
        """source [B, 3, H, W] in [-1, 1], phase_seconds [B] -> angiogram [B, 1, H, W] in [-1, 1]."""
        height, width = source.shape[-2:]
        multiple = 2 ** self.config.num_down_blocks
        if height % multiple or width % multiple:
            raise ValueError(f"Pix2PixUNet with {self.config.num_down_blocks} down blocks needs sides divisible by "
                             f"{multiple}, got {height} x {width}")
        x = torch.cat([source, phase_plane(phase_seconds, height, width).to(source)], dim=1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the innermost features are `x` itself
        for block in self.up:
            x = torch.cat([block(x), skips.pop()], dim=1)
        return torch.tanh(self.head(x))


def train_pix2pix(dataset: PairedFFADataset, steps: int, batch_size: int, lr: float = 2e-4, seed: int = 0,
                  base_channels: int = 32, device: str | torch.device = "cpu") -> Pix2PixUNet:
    """Train a `Pix2PixUNet` with L1 on the dataset's (source, target, phase) items; returns it in eval mode.

    Give it the diffusion model's `--max_train_steps` and `--train_batch_size` for a like-for-like comparison.
    Adam with pix2pix's betas (0.5, 0.999). Each epoch re-draws which phase a wide-layout row contributes, as the
    diffusion trainer does. Deterministic for a seed.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps=}, {batch_size=}")
    torch.manual_seed(seed)
    model = Pix2PixUNet(base_channels=base_channels,
                        num_down_blocks=default_down_blocks(dataset.resolution)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    step, epoch = 0, 0
    progress = tqdm(total=steps, desc="pix2pix training")
    while step < steps:
        dataset.set_epoch(epoch)
        for batch in loader:
            prediction = model(batch["source"].to(device), batch["phase_seconds"].to(device))
            loss = F.l1_loss(prediction, batch["target"][:, :1].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            progress.update(1)
            progress.set_postfix(l1=f"{loss.item():.4f}")
            if step >= steps:
                break
        epoch += 1
    progress.close()
    return model.eval()
