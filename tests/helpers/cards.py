"""A valid model card to start tests from."""

from cloudseg.card import InputTransform, ModelCard


def make_card(**changes: object) -> ModelCard:
    """An r18-like sigmoid card, with ``changes`` applied."""
    values: dict[str, object] = dict(
        name="r18-test",
        architecture="fastai DynamicUnet, resnet18 body",
        bands=("red", "green", "blue", "nir"),
        value_kind="dn",
        transform=InputTransform(1 / 65535, 0.0, (0.1, 0.1, 0.1, 0.2), (0.05, 0.05, 0.05, 0.1)),
        output_kind="sigmoid",
        classes=("cloud",),
        cloud_classes=("cloud",),
    )
    values.update(changes)
    return ModelCard(**values)  # type: ignore[arg-type]
