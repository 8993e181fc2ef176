"""vaelab's Hydra configs (a package, so Hydra finds them in an installed vaelab as pkg://vaelab.conf)."""
