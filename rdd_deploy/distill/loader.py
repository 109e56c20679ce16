"""Training batches that do not depend on the number of processes or on interruptions.

Each epoch is one seeded permutation of the data set; a global batch is the next `batch_size` indices of it,
dealt round-robin to the ranks. Each sample's augmentation is seeded by (seed, epoch, index). So a run on
two processes sees exactly the batches of a run on one, and a resumed run continues with exactly the batches
the interrupted one would have drawn, with no data-loader RNG state to save.

Images travel as uint8 NHWC (a quarter of float32's bytes through pinned memory and PCIe) and are normalised
on the device by `DeviceNormalizer`, with the arithmetic of the runtime's `normalize_batch`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from rdd_deploy.data.base import augment_pixels
from rdd_deploy.distill.distributed import DistEnv
from rdd_deploy.distill.preemption import ignore_stop_signals
from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.preprocess import source_channels


class SeededAugmentation(Dataset):
    """Wraps a training data set; item (epoch, index) is sample `index` augmented with its own seed.

    Items are (uint8 HxWx3 image, int64 HxW label): the data set's augmentation without its normalisation.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            image, label = augment_pixels(*self.dataset.raw(index), self.dataset.augment)
        # copies: readers may cache their arrays, and PIL's are read-only (an uncropped image comes back as it is)
        return torch.from_numpy(image.copy()), torch.from_numpy(label.astype(np.int64))


class DeviceNormalizer:
    """uint8 NHWC batches -> float32 NCHW on the device, (pixel / 255 - mean) / std as `normalize_batch` does it."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 channels_last: bool, channel_order: str = "RGB") -> None:
        self.channels = list(source_channels(channel_order))  # BGR networks read the RGB image's channels reversed
        std64 = np.asarray(std, np.float64)
        # The same float32 constants and the same two roundings (multiply, then subtract) as the numpy version.
        self.scale = torch.from_numpy((1.0 / (255.0 * std64)).astype(np.float32)).to(device).view(1, 3, 1, 1)
        self.shift = torch.from_numpy((np.asarray(mean, np.float64) / std64).astype(np.float32)).to(device)
        self.shift = self.shift.view(1, 3, 1, 1)
        self.device, self.channels_last = device, channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Move a uint8 [N,H,W,3] batch to the device and normalise it (channels_last when asked)."""
        nchw = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)  # a channels_last view, no copy
        if self.channels != [0, 1, 2]:
            nchw = nchw[:, self.channels]
        if not self.channels_last:
            nchw = nchw.contiguous()  # reorder the uint8 bytes, not the four times larger floats
        return nchw.float().mul_(self.scale).sub_(self.shift)


class EpochSampler(Sampler):
    """Yields (epoch, index) keys of this rank's share of full global batches, from a given global batch on."""

    def __init__(self, size: int, batch_size: int, env: DistEnv, seed: int) -> None:
        self.batches_per_epoch = size // batch_size
        if self.batches_per_epoch == 0:
            raise RDDError(f"the training set has {size} images, fewer than one global batch of {batch_size}")
        self.size, self.batch_size, self.env, self.seed = size, batch_size, env, seed
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        """Start the next iteration at global batch `start_batch` of `epoch`."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size // self.env.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        for batch in range(self.start_batch, self.batches_per_epoch):
            chunk = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            for index in chunk[self.env.rank::self.env.world_size]:
                yield self.epoch, index


def batches(dataset: Dataset, batch_size: int, env: DistEnv, seed: int, workers: int,
            start_iteration: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless per-rank (uint8 NHWC images, labels) batches starting at global iteration `start_iteration`.

    The sizes are checked here, at the call (a start-up check), not at the first batch.
    """
    if batch_size % env.world_size:
        raise RDDError(f"optim.batch_size {batch_size} does not split evenly over {env.world_size} processes")
    sampler = EpochSampler(len(dataset), batch_size, env, seed)
    loader = DataLoader(SeededAugmentation(dataset, seed), batch_size=batch_size // env.world_size,
                        sampler=sampler, num_workers=workers, pin_memory=env.device.type == "cuda",
                        drop_last=True, generator=torch.Generator().manual_seed(seed),
                        persistent_workers=workers > 0, worker_init_fn=ignore_stop_signals if workers else None)
    # The loader's own generator: otherwise each new epoch iterator draws a worker seed from the global RNG,
    # which dropout also uses, and a resumed run would drift from the straight one.
    return _endless(loader, sampler, *divmod(start_iteration, sampler.batches_per_epoch))


def _endless(loader: DataLoader, sampler: EpochSampler, epoch: int,
             start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        sampler.set_position(epoch, start_batch)
        yield from loader
        epoch, start_batch = epoch + 1, 0
