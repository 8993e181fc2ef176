"""vaelab's Hydra sweeper on current Optuna (>= 4): ``hydra/sweeper=vaelab_optuna`` (see conf/hparams_search)."""
