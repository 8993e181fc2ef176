"""The names of what every model logs, ``{stage}/{term}`` (and ``{stage}/nelbo``), and of an evaluation's IWAE
figure: no torch here, so the commands' config checks (``vaelab.checks``) read them before torch loads."""

STAGES = ("train", "val", "test")
# The conventions of every number (docs/evaluation.md, "What the numbers are"): data.binarize, the pixels a model sees
# (vaelab.data.batches), and model.likelihood, its -log p(x|z) (vaelab.models.base).
BINARIZE = ("none", "dynamic", "threshold")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli")
LOGGED_TERMS = ("recon", "kl", "loss")

# The IWAE figure of an evaluation, named for what it is. A Bernoulli decoder's cross-entropy of grey levels is not a
# density (Loaiza-Ganem and Cunningham 2019), so its IWAE bound is not -log p(x) and compares with no published
# likelihood; on binarized pixels (data.binarize) or with the continuous Bernoulli's density it is -log p(x), nats.
IWAE_NLL = "iwae_nll"
IWAE_BCE_BOUND = "iwae_bce_bound"
IWAE_KEYS = (IWAE_NLL, IWAE_BCE_BOUND)


def iwae_key(binarize: str, likelihood: str) -> str:
    """``iwae_bce_bound`` for grey levels under a Bernoulli decoder, else ``iwae_nll`` (a true -log p(x))."""
    return IWAE_BCE_BOUND if binarize == "none" and likelihood == "bernoulli" else IWAE_NLL
