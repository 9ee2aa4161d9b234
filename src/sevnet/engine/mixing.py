"""Mixup and CutMix on a training batch where the model is (the GPU, once the clips are there).

Each batch pairs clip i with clip B-1-i (the batch reversed, as timm does) and draws one ratio
``lam ~ Beta(alpha, alpha)``: Mixup blends whole clips, CutMix pastes one spatial box of the partner
through every frame (a tube: a box that moved between frames would be a motion cue the label does not
have) and sets ``lam`` to the area actually kept. Targets become ``lam * t + (1 - lam) * t_partner``
(one-hot for single-label data, multi-hot as given for multi-label), which the cross-entropy and BCE
losses take as they are. With both alphas set, each batch uses one of the two, evenly. torchvision's
``v2.MixUp`` / ``v2.CutMix`` take only 4-D images or (B, T, C, H, W) videos with integer labels; this
works on (B, C, T, H, W) in any memory format and on multi-hot targets.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F


class ClipMixer:
    """``mixer(clip, target) -> (clip, soft_target)``; the clip is changed out of place."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int, seed: int = 0) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha + cutmix_alpha == 0:
            raise ValueError(f"need mixup_alpha or cutmix_alpha > 0, got {mixup_alpha}, {cutmix_alpha}")
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.num_classes = num_classes
        self.rng = random.Random(seed)  # its own stream: the data order does not shift when mixing is on

    def __call__(self, clip: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        soft = target.float() if target.dim() == 2 else F.one_hot(target, self.num_classes).float()
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or self.rng.random() < 0.5)
        if use_cutmix:
            clip, lam = self.cutmix(clip, self.rng.betavariate(self.cutmix_alpha, self.cutmix_alpha))
        else:
            lam = self.rng.betavariate(self.mixup_alpha, self.mixup_alpha)
            clip = clip * lam + clip.flip(0) * (1 - lam)
        return clip, soft * lam + soft.flip(0) * (1 - lam)

    def cutmix(self, clip: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        """Paste the partner's box of area ``(1 - lam) * H * W`` (clipped at the border) into every
        frame; returns the clip and the share of the area kept."""
        h, w = clip.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = self.rng.randrange(h), self.rng.randrange(w)
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = clip.clone()
        out[..., y0:y1, x0:x1] = clip.flip(0)[..., y0:y1, x0:x1]
        return out, 1 - (y1 - y0) * (x1 - x0) / (h * w)
