"""Networks: image encoders, latent-conditioned flow decoders, label anchors, LatentZoningNetwork."""
