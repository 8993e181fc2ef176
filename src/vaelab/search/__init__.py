"""vaelab's Optuna sweeper (``hparams_search=optuna``): the search space from Hydra's sweep syntax (``space``), the
study's life cycle (``lifecycle``) and the sweep itself (``sweeper``). Hydra reaches it through
``hydra_plugins.vaelab_optuna_sweeper``, which imports it (and Optuna) only when a sweep asks for it."""
