"""CURL-SAC from pixels: frame-deduplicated replay, agent, trainer; ``load_agent`` to reuse a
trained one.

Built from :mod:`curl_moco.contrastive` parts and :mod:`curl_moco.io`; never imports
:mod:`curl_moco.pretrain` (pretrained encoders arrive through ``curl_moco.io.encoder_export``).
"""

from curl_moco.rl.agent import CurlSacAgent
from curl_moco.rl.config import CurlSacConfig, resolve_config, validate
from curl_moco.rl.load import LoadedAgent, load_agent
from curl_moco.rl.replay import ReplayBatch, ReplayBuffer
from curl_moco.rl.trainer import Trainer, TrainResult, train

__all__ = ["CurlSacAgent", "CurlSacConfig", "LoadedAgent", "ReplayBatch", "ReplayBuffer",
           "TrainResult", "Trainer", "load_agent", "resolve_config", "train", "validate"]
