"""MoCo vision pretraining on the shared contrastive core (never imports :mod:`curl_moco.rl`).

- :mod:`.moco`: the method (:class:`MoCo`), built only from :mod:`curl_moco.contrastive` parts.
- :mod:`.data`: image folders and DMC frame folders (decode on CPU workers, uint8).
- :mod:`.transforms`: views and evaluation transforms on the device.
- :mod:`.trainer`: single-process or torchrun/DDP training with kNN monitor and checkpoints.
- :mod:`.evaluate`: kNN, linear probe and state-regression on frozen features.
- :mod:`.export`: torchvision state dict or exchange-format encoder for the agent.
"""

from curl_moco.pretrain.config import LinearEvalConfig, MocoConfig
from curl_moco.pretrain.moco import MoCo, MocoOutput

__all__ = ["LinearEvalConfig", "MoCo", "MocoConfig", "MocoOutput"]
