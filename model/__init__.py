"""Networks, backbone registry, pretrained-weight mapping and checkpoints (needs torch)."""
