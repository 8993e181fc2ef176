"""The names of what every model logs, ``{stage}/{term}`` (and ``{stage}/nelbo``): no torch here, so the commands'
config checks (``vaelab.checks``) read them before torch loads."""

STAGES = ("train", "val", "test")
LOGGED_TERMS = ("recon", "kl", "loss")
