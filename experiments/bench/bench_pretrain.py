"""MoCo input pipelines: two augmented views per image, images per second.

- ours: ``ImageFolderDataset`` (CPU workers decode to uint8 and collate) -> device ->
  ``MocoAugment`` v2 twice (the default fused backend; ``ours_kornia``: the kornia backend);
- baseline: ``torchvision.datasets.ImageFolder`` with torchvision transforms on PIL images in
  the workers (the MoCo v2 recipe: RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4,
  0.1) p=0.8, RandomGrayscale 0.2, GaussianBlur(sigma 0.1-2) p=0.5, flip, ToTensor, Normalize;
  two views) -> device.

Same device, batch size and number of workers. The images are real: dm_control frames rendered
by ``envs.make_env`` (or scikit-learn's handwritten digits, ``--source digits``), written as
JPEG files into a temporary ImageNet-style folder (``root/<class>/<image>.jpg``).

With ``--train-steps N`` it also measures MoCo v2 training images/s for ResNet-18 (model and
optimiser from ``curl_moco.pretrain``), fed by each pipeline: same model step, only the input
pipeline differs.

    python -m experiments.bench.bench_pretrain [--batch-size 64] [--num-workers 2]
    python -m experiments.bench.bench_pretrain --device cuda --image-size 256 --crop-size 224 \\
        --batch-size 256 --num-workers 8 --batches 30 --train-steps 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from curl_moco.experiments.bench.common import (
    command_line,
    machine_info,
    prepare_device,
    print_table,
    synchronize,
    write_results,
)

DOMAINS: tuple[str, ...] = ("cartpole-swingup", "walker-walk", "cheetah-run", "finger-spin",
                            "reacher-easy", "ball_in_cup-catch")


# ------------------------------------------------------------------ the image folder
def write_dmc_folder(root: Path, image_size: int, per_domain: int, seed: int = 0) -> int:
    """Render ``per_domain`` frames of each CURL task (random actions) as ``root/<task>/*.jpg``;
    returns the number of files written."""
    from PIL import Image

    from curl_moco.envs import make_env

    rng = np.random.default_rng(seed)
    written = 0
    for task in DOMAINS:
        env = make_env(task, image_size=image_size, frame_stack=1, seed=seed)
        folder = root / task
        folder.mkdir(parents=True, exist_ok=True)
        try:
            env.reset(seed=seed)
            for i in range(per_domain):
                for _ in range(3):  # a few steps apart, so frames differ
                    action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
                    obs, *_ = env.step(action)
                Image.fromarray(np.ascontiguousarray(obs.transpose(1, 2, 0))).save(
                    folder / f"{i:05d}.jpg", quality=95)
                written += 1
        finally:
            env.close()
    return written


def write_digits_jpeg_folder(root: Path, image_size: int, per_class: int) -> int:
    """scikit-learn's digits (real, 8x8 grey) upsampled to ``image_size`` RGB JPEGs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts: dict[int, int] = {}
    for image, target in zip(digits.images, digits.target):
        label = int(target)
        if counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        grey = (image / 16.0 * 255.0).astype(np.uint8)
        img = Image.fromarray(grey).resize((image_size, image_size), Image.BILINEAR)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        img.convert("RGB").save(folder / f"{counts[label] - 1:05d}.jpg", quality=95)
    return sum(counts.values())


def replicate(root: Path, total: int) -> int:
    """Copy files (new names, same class) until the folder holds about ``total`` images, so
    that an epoch is long enough to time without rendering thousands of frames."""
    files = sorted(root.glob("*/*.jpg"))
    n, i = len(files), 0
    while n < total:
        src = files[i % len(files)]
        shutil.copyfile(src, src.parent / f"copy{i:06d}_{src.name}")
        n, i = n + 1, i + 1
    return n


# ------------------------------------------------------------------ the two pipelines
class TwoViews:
    """Apply one torchvision transform twice to a PIL image (MoCo's two crops)."""

    def __init__(self, transform: Callable[[Any], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(image), self.transform(image)


def torchvision_v2_transform(crop_size: int) -> Callable[[Any], torch.Tensor]:
    """MoCo v2's augmentation with torchvision on PIL images (the baseline)."""
    from torchvision import transforms as T

    from curl_moco.contrastive.augment import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        default_blur_kernel_size,
    )

    kernel = default_blur_kernel_size(crop_size)
    return T.Compose([
        T.RandomResizedCrop(crop_size, scale=(0.2, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def baseline_views(root: Path, args: argparse.Namespace, device: torch.device
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(root), transform=TwoViews(torchvision_v2_transform(args.crop_size)))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.num_workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))
    for (view1, view2), _ in _forever(loader):
        yield (view1.to(device, non_blocking=True), view2.to(device, non_blocking=True))


def our_views(root: Path, args: argparse.Namespace, device: torch.device,
              backend: str = "fused") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    from curl_moco.contrastive.augment import MocoAugment
    from curl_moco.pretrain.data import ImageFolderDataset, collate_samples

    dataset = ImageFolderDataset(root, args.image_size)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.num_workers, collate_fn=collate_samples,
                        pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))
    augment = MocoAugment(args.crop_size, "v2", backend=backend).to(device)
    for batch in _forever(loader):
        images = batch["image"].to(device, non_blocking=True)
        yield augment(images), augment(images)


def _forever(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def our_kornia_views(root: Path, args: argparse.Namespace, device: torch.device
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return our_views(root, args, device, backend="kornia")


PIPELINES: dict[str, Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]] = {
    "baseline": baseline_views, "ours": our_views, "ours_kornia": our_kornia_views}
PIPELINE_LABELS: dict[str, str] = {
    "baseline": "baseline: torchvision on PIL in workers",
    "ours": "ours: uint8 decode + fused batched ops",
    "ours_kornia": "ours, kornia backend: uint8 decode + kornia"}


def time_pipeline(make: Callable[[], Iterator[Any]], batches: int, warmup: int,
                  device: torch.device, step: Callable[[Any], None] | None = None
                  ) -> dict[str, float]:
    """Seconds for ``batches`` batches after ``warmup`` (worker start-up excluded)."""
    iterator = make()
    try:
        for _ in range(warmup):
            views = next(iterator)
            if step is not None:
                step(views)
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            views = next(iterator)
            if step is not None:
                step(views)
        synchronize(device)
        return {"seconds": time.perf_counter() - t0, "batches": batches}
    finally:
        iterator.close()  # shuts the loader's workers down before the next pipeline runs


# ------------------------------------------------------------------ MoCo training step
def moco_step_factory(args: argparse.Namespace, device: torch.device
                      ) -> Callable[[], Callable[[Any], None]]:
    """A fresh ResNet-18 MoCo v2 (model + SGD from ``curl_moco.pretrain``) per call; the step
    is what the pretraining loop does after augmentation."""
    from curl_moco.pretrain.config import MocoConfig
    from curl_moco.pretrain.moco import MoCo
    from curl_moco.pretrain.optim import build_optimizer

    def make() -> Callable[[Any], None]:
        torch.manual_seed(0)
        cfg = MocoConfig(data="unused", arch="resnet18", small_input=False,
                         head="mlp", dim=128, queue_size=args.batch_size * 16,
                         temperature=0.2, batch_size=args.batch_size)
        model = MoCo.from_config(cfg).to(device)
        channels_last = device.type == "cuda"
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer("sgd", model.parameters(), lr=0.03, momentum=0.9,
                                    weight_decay=1e-4)
        amp = device.type == "cuda"

        def step(views: tuple[torch.Tensor, torch.Tensor]) -> None:
            view1, view2 = views
            if channels_last:
                view1 = view1.contiguous(memory_format=torch.channels_last)
                view2 = view2.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(view1, view2)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
        return step
    return make


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("dmc", "digits"), default="dmc")
    parser.add_argument("--image-size", type=int, default=128, help="side of the JPEG files")
    parser.add_argument("--crop-size", type=int, default=112, help="side of the views")
    parser.add_argument("--unique-images", type=int, default=16,
                        help="rendered frames per task (digits: per class)")
    parser.add_argument("--num-images", type=int, default=1024,
                        help="files in the folder (rendered frames are copied up to this)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds; the pipelines alternate (order flipped every round)")
    parser.add_argument("--train-steps", type=int, default=2,
                        help="timed MoCo ResNet-18 training steps per pipeline; 0 = skip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--data", default=None,
                        help="use this existing image folder instead of writing one")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)

    device = prepare_device(args.device, args.threads)
    tmp = None
    try:
        if args.data:
            root = Path(args.data)
            made = {"files": len(list(root.glob("*/*")))}
        else:
            tmp = tempfile.TemporaryDirectory(prefix="bench_pretrain_")
            root = Path(tmp.name) / "images"
            t0 = time.perf_counter()
            if args.source == "dmc":
                # Render in a spawned process: a GL context in this process would be inherited
                # by the forked DataLoader workers (a segfault with EGL).
                spawn = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                    unique = pool.submit(write_dmc_folder, root, args.image_size,
                                         args.unique_images).result()
            else:
                unique = write_digits_jpeg_folder(root, args.image_size, args.unique_images)
            files = replicate(root, args.num_images)
            made = {"unique_images": unique, "files": files,
                    "seconds_to_write": time.perf_counter() - t0}
        print(f"[bench_pretrain] image folder: {made}")

        seconds = {name: 0.0 for name in PIPELINES}
        batches = {name: 0 for name in PIPELINES}
        for r in range(args.rounds):
            order = list(PIPELINES) if r % 2 == 0 else list(PIPELINES)[::-1]
            for name in order:
                t = time_pipeline(lambda n=name: PIPELINES[n](root, args, device),
                                  args.batches, args.warmup, device)
                seconds[name] += t["seconds"]
                batches[name] += t["batches"]
        rate = {name: batches[name] * args.batch_size / seconds[name] for name in PIPELINES}
        augment = {name: {"images_per_s": rate[name], "views_per_s": 2 * rate[name],
                          "seconds": seconds[name], "batches": batches[name],
                          "speedup": rate[name] / rate["baseline"]}
                   for name in PIPELINES}
        augment["speedup"] = rate["ours"] / rate["baseline"]
        rows = [["augment (2 views)", PIPELINE_LABELS[name], rate[name],
                 augment[name]["speedup"]] for name in PIPELINES]

        training: dict[str, Any] = {}
        if args.train_steps > 0:
            try:
                make_step = moco_step_factory(args, device)
            except ImportError as error:
                training = {"skipped": f"curl_moco.pretrain is not available: {error}"}
                print(f"[bench_pretrain] skipping MoCo training rows: {training['skipped']}")
            else:
                for name in ("baseline", "ours"):
                    step = make_step()
                    t = time_pipeline(lambda n=name: PIPELINES[n](root, args, device),
                                      args.train_steps, 1, device, step=step)
                    training[name] = {"images_per_s": args.train_steps * args.batch_size
                                      / t["seconds"], "steps": args.train_steps}
                training["speedup"] = (training["ours"]["images_per_s"]
                                       / training["baseline"]["images_per_s"])
                rows += [["MoCo v2 ResNet-18 train", f"{name} pipeline",
                          training[name]["images_per_s"],
                          training[name]["images_per_s"] / training["baseline"]["images_per_s"]]
                         for name in ("baseline", "ours")]
        print_table(f"bench_pretrain on {device}: {args.image_size}px JPEG -> two "
                    f"{args.crop_size}px views, batch {args.batch_size}, "
                    f"{args.num_workers} workers", ["what", "pipeline", "images/s", "speedup"],
                    rows)
        results = {
            "machine": machine_info(device),
            "command": command_line("experiments.bench.bench_pretrain", argv),
            "settings": {k: v for k, v in vars(args).items() if k != "out_dir"},
            "image_folder": made,
            "augment": augment,
            "moco_training": training,
            "goal": {"speedup": 1.5, "met": augment["speedup"] >= 1.5},
        }
        write_results("bench_pretrain", results, args.out_dir)
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
