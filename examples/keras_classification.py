"""Classification with Keras 3 `model.fit` from a folder per class (the `flow_from_directory` job).

python examples/keras_classification.py [--data demo-data]   # any backend: KERAS_BACKEND=jax ...
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import keras  # noqa: E402

import xloader as xl  # noqa: E402
from xloader.keras import EpochSync, PyDataset  # noqa: E402
from xloader.synthetic import make_image_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    root = os.path.join(args.data, "photos")
    if not os.path.isdir(root):
        make_image_folder(root, images_per_class=16)  # data/photos/<class>/*.jpg, 4 classes

    augment = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-15, 15), p=0.5), A.RandomBrightnessContrast(p=0.5)])
    train_images = xl.ImageFolder(root, image_size=(64, 64), transform=augment)
    # No separate validation folder here, so validate on the same files without augmentation.
    val_images = xl.ImageFolder(root, image_size=(64, 64), class_names=train_images.class_names)
    train = PyDataset(train_images, batch_size=16, shuffle=True, seed=0, workers=2)
    val = PyDataset(val_images, batch_size=32)

    model = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(train_images.class_names)),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    # shuffle=False: xloader shuffles samples; EpochSync keeps the dataset on fit's epoch.
    model.fit(train, validation_data=val, epochs=args.epochs, shuffle=False, verbose=2, callbacks=[EpochSync(train)])
    predictions = model.predict(PyDataset(val_images, batch_size=32, to_fit=False), verbose=0)
    print(f"predicted {len(predictions)} images into {predictions.shape[1]} classes")


if __name__ == "__main__":
    main()
