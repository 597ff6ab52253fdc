"""unetpp: train, prune and serve UNet++ for biomedical image segmentation."""

__version__ = "0.1.0"
