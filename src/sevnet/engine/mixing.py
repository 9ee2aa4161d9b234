"""Mixup and CutMix on a training batch where the model is (the GPU, once the clips are there).

Each batch pairs clip i with clip B-1-i (the batch reversed, as timm does) and draws one ratio
``lam ~ Beta(alpha, alpha)``: Mixup blends whole clips, CutMix pastes one spatial box of the partner
through every frame (a tube: a box that moved between frames would be a motion cue the label does not
have) and sets ``lam`` to the area actually kept. Targets become ``lam * t + (1 - lam) * t_partner``
(one-hot for single-label data, multi-hot as given for multi-label), which the cross-entropy and BCE
losses take as they are. With both alphas set, each batch uses one of the two, evenly. torchvision's
``v2.MixUp`` / ``v2.CutMix`` take only 4-D images or (B, T, C, H, W) videos with integer labels; this
works on (B, C, T, H, W) in any memory format and on multi-hot targets.

StillMix (Li et al., ICCV 2023) keeps each label and blends a chosen clip with one frame of another clip,
the same frame in every time step: a still picture carries the look of a video and none of its motion, so
what it adds is appearance the label does not follow. With few videos per class, a model can learn each
video's look instead of its motion; this makes the look a worse cue.
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


AUTO_STILLMIX_PROB = 0.5
AUTO_STILLMIX_MAX_VIDEOS_PER_CLASS = 20


# The few-videos defaults (motion prior, repeats, StillMix) are made for motion; where the look is the class they
# cost 18 points against training from scratch (docs/training.md): the log says so when auto turns StillMix on.
STILLMIX_HINT = (
    ". Classes told apart by what is filmed (objects, places) rather than by how it moves: train from scratch "
    "without StillMix (model.init_from= data.repeats=1 optim.stillmix_prob=0)"
)


def auto_stillmix_prob(videos: int, classes: int) -> float:
    """``optim.stillmix_prob: auto``: 0.5 with up to 20 training videos per class, else 0. Measured at equal
    steps from the motion prior on two motion-defined datasets (docs/training.md): +5 points on each with 5
    videos per class (3 seeds), +1 and +4 with 15; with 60, 0 on one and -3 on the other (2 seeds), where
    there are enough videos for their looks not to be a shortcut. On a look-defined one (the class is
    which photograph is filmed) it costs 4 points with 5 videos per class (3 seeds): the log says what to
    turn off there."""
    return AUTO_STILLMIX_PROB if videos <= AUTO_STILLMIX_MAX_VIDEOS_PER_CLASS * max(classes, 1) else 0.0


class StillMixer:
    """``mixer(clip) -> clip``: each clip, with probability ``prob``, becomes ``(1 - w) * clip + w * still``,
    ``still`` one random frame of another clip of the batch, ``w ~ U(0, max_weight)``; labels unchanged."""

    def __init__(self, prob: float, max_weight: float = 0.5, seed: int = 0) -> None:
        if not 0 < prob <= 1 or not 0 < max_weight <= 1:
            raise ValueError(f"need 0 < prob <= 1 and 0 < max_weight <= 1, got {prob}, {max_weight}")
        self.prob, self.max_weight = prob, max_weight
        self.generator = torch.Generator().manual_seed(seed)  # its own stream, on the CPU: any device

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[0], clip.shape[2]
        if b < 2:
            return clip
        g = self.generator
        # another clip for each: a shift of 1..b-1 around the batch never lands on the clip itself
        partner = (torch.arange(b) + torch.randint(1, b, (1,), generator=g)) % b
        frame = torch.randint(0, t, (b,), generator=g)
        chosen = torch.rand(b, generator=g) < self.prob
        weight = torch.where(chosen, torch.rand(b, generator=g) * self.max_weight, torch.zeros(b))
        still = clip[partner.to(clip.device), :, frame.to(clip.device)].unsqueeze(2)  # (B, C, 1, H, W)
        w = weight.to(clip.device, clip.dtype).view(b, 1, 1, 1, 1)
        return clip * (1 - w) + still * w
