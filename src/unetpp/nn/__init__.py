"""The networks: UNet++ (nested skips, deep supervision, pruning) and the U-Net baseline, their blocks,
checkpoints and export. Shipped whole inside every TorchServe archive."""
