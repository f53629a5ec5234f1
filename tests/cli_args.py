"""Command lines shared by the bad-input tests: tiny, valid runs of the two trainers that a test
extends with one bad setting (``{tmp}`` and ``{digits}`` are filled in by the test)."""

RL = ["--preset", "smoke", "--task", "cartpole-swingup", "--image-size", "40", "--crop-size",
      "32", "--num-layers", "2", "--batch-size", "8", "--seed-steps", "80", "--steps", "160",
      "--device", "cpu", "--no-progress", "--run-dir", "{tmp}/rl"]
MOCO = ["--data", "{digits}", "--arch", "pixel", "--load-size", "32", "--crop-size", "28",
        "--pixel-layers", "2", "--batch-size", "8", "--queue-size", "16", "--epochs", "1",
        "--num-workers", "0", "--device", "cpu", "--no-progress", "--no-tensorboard",
        "--run-dir", "{tmp}/moco"]
