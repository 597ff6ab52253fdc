"""The train stage: the loop, its losses, the weight average, devices and distributed set-up."""
