"""torchvision's classification reference (references/classification/train.py + presets.py), its data path ported to xloader.

    python examples/torchvision_reference.py [--data demo-data] [--epochs 2] [--resume DIR/checkpoint.pth]

Kept from the reference: its options (names and meaning), `load_data`, the presets, MixUp/CutMix,
`train_one_epoch`, `evaluate()` with its length check, checkpoints with `--resume`. Changed,
each marked `# xloader:` below:
- `torchvision.datasets.ImageFolder` -> `xl.ImageFolder(..., image_size=None)`, so
  `RandomResizedCrop` sees the original image as in the reference;
- the presets are albumentations pipelines (same steps, same defaults);
- `DistributedSampler` + `DataLoader` -> `xloader.torch.DataLoader` (rank/world_size from
  `torch.distributed`; evaluation with `shard_mode="exact"`, no padded duplicates);
- `collate_fn=lambda batch: mixup_cutmix(*default_collate(batch))` -> `batch_transform=`;
- `if args.distributed: train_sampler.set_epoch(epoch)` -> the loader's state in the checkpoint
  (see docs/resume-and-distributed.md).
With `--data DIR` and no `DIR/train`, a small generated dataset is written there (train/ and val/).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import torch  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.synthetic import make_image_folder  # noqa: E402
from xloader.torch import DataLoader  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --- presets.py ---------------------------------------------------------------------------------
def classification_preset_train(crop_size: int, hflip_prob: float = 0.5, random_erase_prob: float = 0.0):
    # xloader: torchvision's ClassificationPresetTrain (RandomResizedCrop, RandomHorizontalFlip,
    # PILToTensor + ConvertImageDtype + Normalize, RandomErasing) as albumentations; the loader
    # makes the (N, C, H, W) tensor.
    steps = [A.RandomResizedCrop(size=(crop_size, crop_size), interpolation=cv2.INTER_LINEAR)]
    if hflip_prob > 0:
        steps.append(A.HorizontalFlip(p=hflip_prob))
    steps.append(A.Normalize(mean=MEAN, std=STD))
    if random_erase_prob > 0:
        steps.append(A.Erasing(p=random_erase_prob))
    return A.Compose(steps)


def classification_preset_eval(crop_size: int, resize_size: int):
    # xloader: Resize(resize_size) (the shorter side) + CenterCrop + Normalize.
    return A.Compose(
        [
            A.SmallestMaxSize(max_size=resize_size, interpolation=cv2.INTER_LINEAR),
            A.CenterCrop(crop_size, crop_size),
            A.Normalize(mean=MEAN, std=STD),
        ]
    )


# --- train.py -----------------------------------------------------------------------------------
def get_mixup_cutmix(*, mixup_alpha: float, cutmix_alpha: float, num_classes: int):
    # xloader: torchvision's transforms.v2.MixUp/CutMix in a RandomChoice, as batch transforms.
    recipes = []
    if mixup_alpha > 0:
        recipes.append(xl.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        recipes.append(xl.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if not recipes:
        return None
    return recipes[0] if len(recipes) == 1 else xl.RandomChoice(recipes)


def load_data(traindir: str, valdir: str, args: argparse.Namespace):
    # xloader: image_size=None keeps each file's size, as torchvision's ImageFolder does.
    dataset = xl.ImageFolder(
        traindir,
        image_size=None,
        transform=classification_preset_train(args.train_crop_size, random_erase_prob=args.random_erase),
    )
    dataset_test = xl.ImageFolder(
        valdir,
        image_size=None,
        class_names=dataset.class_names,  # the same label numbers as train
        transform=classification_preset_eval(args.val_crop_size, args.val_resize_size),
    )
    return dataset, dataset_test


def reduce_across_processes(value: int) -> torch.Tensor:
    tensor = torch.tensor(value)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.all_reduce(tensor)
    return tensor


def train_one_epoch(model, criterion, optimizer, data_loader, epoch: int) -> float:
    model.train()
    total, start = 0.0, time.perf_counter()
    for image, target in data_loader:  # target: float32 label weights with MixUp/CutMix
        loss = criterion(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(image)
    seen = len(data_loader.dataset)  # xloader: samples (batches: len(data_loader)), as in torch
    print(f"Epoch: [{epoch}] loss {total / seen:.4f}, {seen / (time.perf_counter() - start):.0f} img/s")
    return total / seen


def evaluate(model, criterion, data_loader) -> float:
    model.eval()
    num_processed_samples, correct = 0, 0
    with torch.inference_mode():
        for image, target in data_loader:
            output = model(image)
            correct += int((output.argmax(1) == target).sum())
            num_processed_samples += image.shape[0]
    # gather the stats from all processes
    num_processed_samples = reduce_across_processes(num_processed_samples)
    correct = int(reduce_across_processes(correct))
    if (
        hasattr(data_loader.dataset, "__len__")
        and len(data_loader.dataset) != num_processed_samples
        and torch.distributed.get_rank() == 0
    ):
        # See FIXME above
        warnings.warn(
            f"It looks like the dataset has {len(data_loader.dataset)} samples, but {num_processed_samples} "
            "samples were used for the validation, which might bias the results. "
            "Try adjusting the batch size and / or the world size. "
            "Setting the world size to 1 is always a safe bet.",
            stacklevel=2,
        )
    accuracy = 100.0 * correct / len(data_loader.dataset)
    print(f"Test: Acc@1 {accuracy:.3f} on {int(num_processed_samples)} of {len(data_loader.dataset)} samples")
    return accuracy


def main(args: argparse.Namespace) -> None:
    traindir, valdir = os.path.join(args.data, "train"), os.path.join(args.data, "val")
    if not os.path.isdir(traindir):
        make_image_folder(traindir, images_per_class=12, seed=0)
        make_image_folder(valdir, images_per_class=5, seed=1)
    dataset, dataset_test = load_data(traindir, valdir, args)
    num_classes = len(dataset.class_names)

    # xloader: one loader replaces DistributedSampler + DataLoader + the MixUp collate_fn.
    data_loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,  # an explicit seed: the same on every rank, and in a resumed run
        num_workers=args.workers,
        pin_memory=torch.cuda.is_available(),
        batch_transform=get_mixup_cutmix(
            mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha, num_classes=num_classes
        ),
    )
    data_loader_test = DataLoader(
        dataset_test, batch_size=args.batch_size, seed=args.seed, num_workers=args.workers, shard_mode="exact"
    )

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, num_classes),
    )
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    if args.resume:
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        args.start_epoch = checkpoint["epoch"] + 1
        # xloader: the reference calls train_sampler.set_epoch only when distributed; a resumed
        # single-process run would replay epoch 0. The loader's state says where it stopped.
        data_loader.load_state_dict(checkpoint["data_loader"])
        if data_loader.epoch != args.start_epoch:
            raise RuntimeError(
                f"the checkpoint is for epoch {checkpoint['epoch']} but its loader state resumes at epoch "
                f"{data_loader.epoch}: was it saved mid-epoch?"
            )
        print(f"resumed at epoch {args.start_epoch} (loader epoch {data_loader.epoch})")

    for epoch in range(args.start_epoch, args.epochs):
        train_one_epoch(model, criterion, optimizer, data_loader, epoch)
        accuracy = evaluate(model, criterion, data_loader_test)
        if args.output_dir:
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "args": args,
                "data_loader": data_loader.state_dict(),  # xloader: {"epoch": epoch + 1, "next_batch": 0, ...}
            }
            torch.save(checkpoint, os.path.join(args.output_dir, "checkpoint.pth"))
    print(f"done: {args.epochs - args.start_epoch} epochs, last Acc@1 {accuracy:.3f}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", "--data-path", dest="data", default="demo-data", help="holds train/ and val/")
    parser.add_argument("-b", "--batch-size", default=8, type=int)
    parser.add_argument("--epochs", default=2, type=int)
    parser.add_argument("-j", "--workers", default=2, type=int)
    parser.add_argument("--lr", default=0.1, type=float)
    parser.add_argument("--label-smoothing", default=0.0, type=float)
    parser.add_argument("--mixup-alpha", default=0.2, type=float)
    parser.add_argument("--cutmix-alpha", default=1.0, type=float)
    parser.add_argument("--random-erase", default=0.0, type=float)
    parser.add_argument("--train-crop-size", default=48, type=int)
    parser.add_argument("--val-resize-size", default=56, type=int)
    parser.add_argument("--val-crop-size", default=48, type=int)
    parser.add_argument("--output-dir", default=".", type=str)
    parser.add_argument("--resume", default="", type=str)
    parser.add_argument("--start-epoch", default=0, type=int)
    parser.add_argument("--seed", default=0, type=int, help="xloader: the loader seed (order, augmentation, MixUp)")
    return parser


if __name__ == "__main__":  # needed: worker processes may start with forkserver
    main(get_args_parser().parse_args())
