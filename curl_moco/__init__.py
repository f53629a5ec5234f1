"""curl_moco: contrastive representation learning for control from pixels (CURL-SAC) and for
vision pretraining (MoCo v1/v2/v3) on one shared core.

Importing the package registers the gymnasium ids ``curl_moco/<task>-v0`` of every DeepMind
Control task (:mod:`curl_moco.envs.gymnasium_ids`); it imports gymnasium, never dm_control or
torch: subpackages load what they need when they are imported.
"""

from curl_moco.envs.gymnasium_ids import register_envs as _register_gymnasium_envs

_register_gymnasium_envs()
