"""Reuse a trained CURL-SAC agent: a run folder (or its checkpoint file) -> the agent, its config
and a factory of matching environments::

    from curl_moco.rl import load_agent
    agent, cfg, make_env = load_agent("runs/curl/cartpole-swingup/seed1", device="cpu")
    env = make_env(seed=0)   # same task, render size, frame stack, action repeat, camera

Checkpoints written on a GPU load on a CPU-only machine (tensors are mapped to the CPU first).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from curl_moco.io.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, read_header
from curl_moco.io.errors import MissingPathError
from curl_moco.rl.agent import CurlSacAgent
from curl_moco.rl.config import CurlSacConfig, resolve_config
from curl_moco.rl.environment import TaskEnvFactory
from curl_moco.rl.trainer import CHECKPOINT_KIND, agent_seed


class LoadedAgent(NamedTuple):
    """What :func:`load_agent` returns (unpacks as ``agent, cfg, make_env``)."""

    agent: CurlSacAgent
    config: CurlSacConfig
    make_env: TaskEnvFactory


@dataclass(frozen=True)
class SavedRun:
    """A CURL-SAC checkpoint read for reuse: its resolved config, how far the run got and its
    evaluation at that step (``eval_round`` None when the checkpoint was not taken right after
    an evaluation)."""

    checkpoint: Path
    config: CurlSacConfig
    env_steps: int
    eval_round: int | None
    eval_returns: tuple[float, ...] | None
    agent_state: dict[str, Any]

    @property
    def action_dim(self) -> int:
        """Actions per step, read off the actor's last layer (``2 x A`` outputs)."""
        model = self.agent_state["model"]
        last = max((key for key in model if key.startswith("actor.trunk.")
                    and key.endswith(".bias")), key=lambda k: int(k.split(".")[2]))
        return int(model[last].shape[0]) // 2


def checkpoint_file(path: str | os.PathLike, setting: str = "run") -> Path:
    """The checkpoint of a run folder or the checkpoint file itself; a :class:`UsageError`
    naming ``setting`` when there is none."""
    path = Path(path)
    if not path.exists():
        raise MissingPathError(f"{setting}={str(path)!r}: no such run folder or checkpoint file")
    if path.is_dir():
        ckpt = path / CHECKPOINT_NAME
        if not ckpt.is_file():
            raise CheckpointError(
                f"{setting}={str(path)!r} holds no {CHECKPOINT_NAME}: a run writes its first "
                "checkpoint after checkpoint_every environment steps (and at its end); give "
                "the folder of a run that got that far")
        return ckpt
    return path


def read_run(path: str | os.PathLike, setting: str = "run") -> SavedRun:
    """Read and check a CURL-SAC run folder or checkpoint (tensors mapped to the CPU)."""
    ckpt = checkpoint_file(path, setting)
    kind = read_header(ckpt)["kind"]  # CheckpointError for a foreign or damaged file
    if kind != CHECKPOINT_KIND:
        what = "a MoCo pretraining checkpoint" if kind == "moco" else f"a {kind!r} checkpoint"
        raise CheckpointError(
            f"{setting}={str(path)!r} is {what}, not a CURL-SAC agent: give a train_dmc run "
            "folder (a pretrained encoder goes into an agent with curl-moco-export-encoder, "
            "then train_dmc --init-encoder)")
    loaded = load_checkpoint(ckpt, kind=CHECKPOINT_KIND, map_location="cpu")
    names = {f.name for f in dataclasses.fields(CurlSacConfig)}
    config = resolve_config(CurlSacConfig(**{k: v for k, v in loaded["config"].items()
                                             if k in names}))
    try:
        payload = loaded["payload"]
        trainer = payload["trainer"]
        env_steps = int(trainer["env_steps"])
        last = trainer.get("last_eval")
        at_checkpoint = last is not None and int(last["env_steps"]) == env_steps
        return SavedRun(
            checkpoint=ckpt, config=config, env_steps=env_steps,
            eval_round=int(trainer["num_evals"]) - 1 if at_checkpoint else None,
            eval_returns=tuple(float(r) for r in last["returns"]) if at_checkpoint else None,
            agent_state=dict(payload["agent"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{setting}={str(path)!r}: {ckpt} lacks the trainer's or agent's "
                              f"state ({error!r}); was it written by train_dmc?") from error


def build_agent(run: SavedRun, device: torch.device | str = "auto",
                compile_mode: str = "off") -> tuple[CurlSacAgent, CurlSacConfig]:
    """The agent of ``run`` with its trained weights on ``device``, and the config it was built
    from (``device`` and ``compile_mode`` replaced; compiling is rarely worth it for acting)."""
    cfg = dataclasses.replace(run.config, device=str(device), compile_mode=compile_mode)
    agent = CurlSacAgent.from_config(cfg, 3 * cfg.frame_stack, run.action_dim,
                                     seed=agent_seed(cfg.seed))
    try:
        with warnings.catch_warnings():  # a GPU run's generator on the CPU: reseeded, fine here
            warnings.filterwarnings("ignore", message="agent generator state is from another")
            agent.load_checkpoint_state(run.agent_state)
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{run.checkpoint}: agent state does not fit its config: "
                              f"{error}") from error
    return agent, cfg


def load_agent(path: str | os.PathLike, device: torch.device | str = "auto") -> LoadedAgent:
    """``agent, cfg, make_env = load_agent(run_dir_or_checkpoint, device="cpu")``.

    ``agent.act(obs, deterministic=True)`` maps an observation ``(3 x frame_stack, H, W)`` uint8
    of ``make_env(seed=...)`` to an action ``(A,)`` in [-1, 1]. Raises
    :class:`~curl_moco.io.errors.UsageError` for a missing, damaged or non-CURL checkpoint."""
    run = read_run(path)
    agent, cfg = build_agent(run, device)
    return LoadedAgent(agent, cfg, TaskEnvFactory(cfg))
