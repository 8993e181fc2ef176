"""Sweeps, in one package: vaelab's Optuna sweeper (``sweeper``: ask, launch, tell; ``space``: Hydra's sweep syntax as
distributions; ``study``: storages and studies; ``lifecycle``: heartbeats and stale trials), what a job reports to
its trial (``pruning``), the multirun's Hydra callbacks (``callbacks``), seeds as replicas (``replicas``) and the
summary of a sweep folder (``summary``; ``vaelab-sweeps``). Hydra reaches the sweeper through
``hydra_plugins.vaelab_optuna_sweeper``, which imports it (and Optuna) only when a sweep asks for it."""
